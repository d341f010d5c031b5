package mirror

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reconcile brings mirror k in line with the desired set: kept when desired
// and its namespace is active, released otherwise.
func (m *Mirror) reconcile(ctx context.Context, k key) error {
	w, ok := m.wanted(k)
	if ok && m.namespaceOpenByName(k.namespace) {
		err := m.keep(ctx, k, w)
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			// The namespace began to go after the cache was read; its
			// update event queues k again, to clean up.
			return nil
		}
		return err
	}
	m.setKept(k, false)
	if err := m.deleteSlices(ctx, k, nil); err != nil {
		return err
	}
	return m.releaseService(ctx, k)
}

func (m *Mirror) namespaceOpenByName(ns string) bool {
	obj, ok, err := m.namespaces.GetStore().GetByKey(ns)
	return err == nil && ok && m.namespaceOpen(obj)
}

// keep ensures the mirror Service, then this replica's slices for it.
func (m *Mirror) keep(ctx context.Context, k key, w want) error {
	svc, err := m.ensureService(ctx, k, w)
	if err != nil {
		return err
	}
	if svc == nil { // someone else's Service holds the name
		m.setKept(k, false)
		m.queue.AddAfter(k, conflictRecheck)
		return m.deleteSlices(ctx, k, nil)
	}
	m.setKept(k, true)
	desired := m.newSlices(k, w)
	for _, s := range desired {
		if err := m.ensureSlice(ctx, s); err != nil {
			return err
		}
	}
	return m.deleteSlices(ctx, k, desired)
}

// ensureService creates or updates the mirror Service of k and returns it,
// or returns nil when an unmanaged Service holds the name. The cache may lag
// behind this replica's own writes and others': a create that collides, or
// an update that conflicts, reads the Service afresh and tries once more.
func (m *Mirror) ensureService(ctx context.Context, k key, w want) (*corev1.Service, error) {
	api := m.cfg.Client.CoreV1().Services(k.namespace)
	cur := m.cachedService(k)
	if cur == nil {
		svc, err := api.Create(ctx, m.newService(k, w), metav1.CreateOptions{})
		if err == nil {
			m.m.wrote(kindService, opCreate)
			m.log.Info("mirror service created", "mirror", k.String(), "ports", w.ports)
			return svc, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create service %s: %w", k, err)
		}
		// Not in the cache: someone else's, or ours and the cache lags.
		if cur, err = api.Get(ctx, k.name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("get service %s: %w", k, err)
		}
	}
	svc, err := m.updateService(ctx, k, cur, w)
	if apierrors.IsConflict(err) {
		if cur, err = api.Get(ctx, k.name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("get service %s: %w", k, err)
		}
		svc, err = m.updateService(ctx, k, cur, w)
	}
	return svc, err
}

// updateService brings cur to w when the mirror manages it; nil when it
// does not.
func (m *Mirror) updateService(ctx context.Context, k key, cur *corev1.Service, w want) (*corev1.Service, error) {
	if !managed(cur) {
		m.conflict(k, cur)
		return nil, nil
	}
	m.clearConflict(k)
	if serviceCurrent(cur, w) {
		return cur, nil
	}
	svc, err := m.cfg.Client.CoreV1().Services(k.namespace).Update(ctx, updatedService(cur, w), metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update service %s: %w", k, err)
	}
	m.m.wrote(kindService, opUpdate)
	m.log.Info("mirror service updated", "mirror", k.String(), "ports", w.ports)
	return svc, nil
}

// releaseService deletes the mirror Service of k unless another replica's
// slices still serve it. Each replica's slice deletions are events for the
// others, so whichever replica lets go last sees no slices and deletes it.
func (m *Mirror) releaseService(ctx context.Context, k key) error {
	cur := m.cachedService(k)
	if cur == nil || !managed(cur) || len(m.cachedSlices(k, false)) > 0 {
		return nil
	}
	api := m.cfg.Client.CoreV1().Services(k.namespace)
	err := m.deleteService(ctx, k, cur)
	if apierrors.IsConflict(err) { // the cache lags: look at the Service afresh
		if cur, err = api.Get(ctx, k.name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("get service %s: %w", k, err)
		}
		if !managed(cur) {
			return nil
		}
		err = m.deleteService(ctx, k, cur)
	}
	return err
}

// deleteService deletes cur, the mirror Service of k. The preconditions
// refuse to delete a Service that was recreated or changed since it was
// read, by another replica say.
func (m *Mirror) deleteService(ctx context.Context, k key, cur *corev1.Service) error {
	err := m.cfg.Client.CoreV1().Services(k.namespace).Delete(ctx, k.name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion},
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil // another replica was first
	case err != nil:
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	m.m.wrote(kindService, opDelete)
	m.log.Info("mirror service deleted", "mirror", k.String())
	return nil
}

// ensureSlice creates or updates one of this replica's slices, reading it
// afresh once when the cache lags, as ensureService does.
func (m *Mirror) ensureSlice(ctx context.Context, want *discoveryv1.EndpointSlice) error {
	api := m.cfg.Client.DiscoveryV1().EndpointSlices(want.Namespace)
	var cur *discoveryv1.EndpointSlice
	if obj, ok, err := m.slices.GetStore().GetByKey(want.Namespace + "/" + want.Name); err == nil && ok {
		cur = obj.(*discoveryv1.EndpointSlice)
	}
	var err error
	if cur == nil {
		if _, err = api.Create(ctx, want, metav1.CreateOptions{}); err == nil {
			m.m.wrote(kindSlice, opCreate)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create endpointslice %s/%s: %w", want.Namespace, want.Name, err)
		}
		if cur, err = api.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("get endpointslice %s/%s: %w", want.Namespace, want.Name, err)
		}
	}
	err = m.updateSlice(ctx, cur, want)
	if apierrors.IsConflict(err) {
		if cur, err = api.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("get endpointslice %s/%s: %w", want.Namespace, want.Name, err)
		}
		err = m.updateSlice(ctx, cur, want)
	}
	return err
}

// updateSlice brings cur, a slice of this replica's name, to want.
func (m *Mirror) updateSlice(ctx context.Context, cur, want *discoveryv1.EndpointSlice) error {
	if !managed(cur) || cur.Labels[LabelReplica] != m.cfg.Replica || cur.AddressType != want.AddressType {
		// Not ours to change (or of an immutable other address type): a
		// name collision, which the hash makes all but impossible.
		return fmt.Errorf("endpointslice %s/%s: held by someone else (replica %q, address type %s)",
			cur.Namespace, cur.Name, cur.Labels[LabelReplica], cur.AddressType)
	}
	if sliceCurrent(cur, want) {
		return nil
	}
	_, err := m.cfg.Client.DiscoveryV1().EndpointSlices(cur.Namespace).Update(ctx, updatedSlice(cur, want), metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update endpointslice %s/%s: %w", cur.Namespace, cur.Name, err)
	}
	m.m.wrote(kindSlice, opUpdate)
	return nil
}

// deleteSlices deletes this replica's slices of k, except those named in
// keep.
func (m *Mirror) deleteSlices(ctx context.Context, k key, keep map[string]*discoveryv1.EndpointSlice) error {
	for _, s := range m.cachedSlices(k, true) {
		if _, ok := keep[s.Name]; ok {
			continue
		}
		err := m.cfg.Client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &s.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpointslice %s/%s: %w", s.Namespace, s.Name, err)
		}
		if err == nil {
			m.m.wrote(kindSlice, opDelete)
		}
	}
	return nil
}

func (m *Mirror) cachedService(k key) *corev1.Service {
	obj, ok, err := m.services.GetStore().GetByKey(k.String())
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.Service)
}

// cachedSlices returns the slices of mirror k: this replica's when own,
// the other replicas' otherwise.
func (m *Mirror) cachedSlices(k key, own bool) []*discoveryv1.EndpointSlice {
	objs, err := m.slices.GetIndexer().ByIndex(byMirror, k.String())
	if err != nil {
		return nil
	}
	var out []*discoveryv1.EndpointSlice
	for _, obj := range objs {
		s := obj.(*discoveryv1.EndpointSlice)
		if (s.Labels[LabelReplica] == m.cfg.Replica) == own {
			out = append(out, s)
		}
	}
	return out
}

// conflict reports an unmanaged Service holding k's name, once per object.
func (m *Mirror) conflict(k key, svc *corev1.Service) {
	m.mu.Lock()
	seen := m.conflicts[k] == svc.UID
	m.conflicts[k] = svc.UID
	m.mu.Unlock()
	if !seen {
		m.m.conflicts.Inc()
		m.log.Warn("mirror name taken by an unmanaged service; leaving it alone", "mirror", k.String(), "uid", svc.UID)
	}
}

func (m *Mirror) clearConflict(k key) {
	m.mu.Lock()
	delete(m.conflicts, k)
	m.mu.Unlock()
}

// setKept records whether this replica keeps mirror k, for the gauge.
func (m *Mirror) setKept(k key, kept bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if kept {
		m.kept[k] = true
	} else {
		delete(m.kept, k)
	}
	m.m.services.Set(float64(len(m.kept)))
}
