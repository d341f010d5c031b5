package mirror

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
)

// byMirror indexes EndpointSlices by the mirror they serve, as a key string.
const byMirror = "mirror"

// newInformers watches all namespaces, and only the mirror's own Services
// and EndpointSlices (all replicas'), selected by label: unmanaged objects
// are never cached, and are read by name only when a create collides.
func (m *Mirror) newInformers() error {
	namespaces := m.cfg.Client.CoreV1().Namespaces()
	m.namespaces = kubeclient.Informer(&corev1.Namespace{}, nil, "", namespaces.List, namespaces.Watch)
	svcs := m.cfg.Client.CoreV1().Services(metav1.NamespaceAll)
	svcSel := labels.Set{LabelManagedBy: ManagedBy}.String() + "," + LabelMirrorOf
	m.services = kubeclient.Informer(&corev1.Service{}, nil, svcSel, svcs.List, svcs.Watch)
	eps := m.cfg.Client.DiscoveryV1().EndpointSlices(metav1.NamespaceAll)
	sliceSel := labels.Set{discoveryv1.LabelManagedBy: SliceManager, LabelManagedBy: ManagedBy}.String()
	m.slices = kubeclient.Informer(&discoveryv1.EndpointSlice{}, cache.Indexers{byMirror: sliceMirrorIndex}, sliceSel, eps.List, eps.Watch)

	if err := m.namespaces.SetTransform(slimNamespace); err != nil {
		return err
	}
	for _, inf := range []cache.SharedIndexInformer{m.services, m.slices} {
		if err := inf.SetTransform(dropManagedFields); err != nil {
			return err
		}
	}
	if _, err := m.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { m.onNamespace(obj) },
		UpdateFunc: func(old, cur any) {
			if m.namespaceOpen(old) != m.namespaceOpen(cur) {
				m.onNamespace(cur)
			}
		},
		DeleteFunc: func(obj any) { m.onNamespace(obj) },
	}); err != nil {
		return err
	}
	if _, err := m.services.AddEventHandler(m.enqueueBy(serviceKey)); err != nil {
		return err
	}
	_, err := m.slices.AddEventHandler(m.enqueueBy(sliceKey))
	return err
}

// enqueueBy queues the mirror that an event's object belongs to.
func (m *Mirror) enqueueBy(keyOf func(metav1.Object) key) cache.ResourceEventHandler {
	add := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if o, ok := obj.(metav1.Object); ok {
			m.queue.Add(keyOf(o))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, cur any) { add(cur) },
		DeleteFunc: add,
	}
}

func serviceKey(o metav1.Object) key { return key{o.GetNamespace(), o.GetName()} }

func sliceKey(o metav1.Object) key {
	return key{o.GetNamespace(), o.GetLabels()[discoveryv1.LabelServiceName]}
}

func sliceMirrorIndex(obj any) ([]string, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	return []string{sliceKey(o).String()}, nil
}

func (m *Mirror) onNamespace(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if ns, ok := obj.(*corev1.Namespace); ok {
		m.enqueueNamespace(ns.Name)
	}
}

// namespaceActive reports whether obj is a namespace that takes new
// objects: one being deleted does not.
func namespaceActive(obj any) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && ns.DeletionTimestamp == nil && ns.Status.Phase != corev1.NamespaceTerminating
}

// namespaceOpen reports whether obj is an active namespace that opted in
// to mirrors.
func (m *Mirror) namespaceOpen(obj any) bool {
	ns, ok := obj.(*corev1.Namespace)
	if !ok || !namespaceActive(obj) || strings.HasPrefix(ns.Name, "kube-") {
		return false
	}
	return ns.Labels[LabelImport] == "true" || slices.Contains(m.cfg.Namespaces, ns.Name)
}

// slimNamespace keeps what the mirror reads of a namespace: its name,
// whether it is terminating and whether it opted in.
func slimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion, DeletionTimestamp: ns.DeletionTimestamp,
			Labels: keepLabel(ns.Labels, LabelImport),
		},
		Status: corev1.NamespaceStatus{Phase: ns.Status.Phase},
	}, nil
}

// keepLabel returns labels' entry for k alone, or nil.
func keepLabel(labels map[string]string, k string) map[string]string {
	if v, ok := labels[k]; ok {
		return map[string]string{k: v}
	}
	return nil
}

func dropManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}
