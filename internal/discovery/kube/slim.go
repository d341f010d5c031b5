package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// annotationPrefix selects the Service annotations kept in the cache: the
// export and policy annotations.
const annotationPrefix = "ewgw.io/"

// slim is the informers' transform: it drops what the gateway never reads
// before an object enters the cache, so the cache holds a few hundred bytes
// per object rather than whole API objects with their managed fields. It
// mutates in place, which client-go allows since v1.27, and is idempotent,
// as client-go requires.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		ann := keepPrefixed(o.Annotations, annotationPrefix)
		labels := keepKeys(o.Labels, labelManagedBy, labelMirrorOf)
		o.ObjectMeta = slimMeta(o.ObjectMeta)
		o.Annotations, o.Labels = ann, labels
		o.Spec = corev1.ServiceSpec{Type: o.Spec.Type, Ports: o.Spec.Ports}
		o.Status = corev1.ServiceStatus{}
	case *discoveryv1.EndpointSlice:
		labels := keepKeys(o.Labels, discoveryv1.LabelServiceName)
		o.ObjectMeta = slimMeta(o.ObjectMeta)
		o.Labels = labels
		for i, e := range o.Endpoints {
			o.Endpoints[i] = discoveryv1.Endpoint{Addresses: e.Addresses[:min(1, len(e.Addresses))], Conditions: e.Conditions}
		}
	case *mcsv1alpha1.ServiceExport:
		ann := keepPrefixed(o.Annotations, annotationPrefix)
		*o = mcsv1alpha1.ServiceExport{ObjectMeta: slimMeta(o.ObjectMeta)}
		o.Annotations = ann
	case *mcsv1beta1.ServiceExport:
		ann := keepPrefixed(o.Annotations, annotationPrefix)
		*o = mcsv1beta1.ServiceExport{ObjectMeta: slimMeta(o.ObjectMeta)}
		o.Annotations = ann
	}
	return obj, nil
}

// slimMeta keeps the identity of an object and what the cache needs: name,
// namespace, UID and resource version.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

// keepPrefixed returns the entries of m whose keys start with prefix, or
// nil when there are none.
func keepPrefixed(m map[string]string, prefix string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// keepKeys returns m's entries for keys, or nil when it has none.
func keepKeys(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
