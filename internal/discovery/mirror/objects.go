package mirror

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// managed reports whether the mirror wrote obj: only then may it change or
// delete it.
func managed(obj metav1.Object) bool { return obj.GetLabels()[LabelManagedBy] == ManagedBy }

func serviceLabels(w want) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelMirrorOf: w.source}
}

func servicePorts(w want) []corev1.ServicePort {
	ports := make([]corev1.ServicePort, 0, len(w.ports))
	for _, p := range w.ports {
		ports = append(ports, corev1.ServicePort{Name: portName(p), Port: int32(p), Protocol: corev1.ProtocolTCP})
	}
	return ports
}

// newService is the mirror Service of k: selectorless, so the only
// endpoints are those the replicas' EndpointSlices carry.
func (m *Mirror) newService(k key, w want) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: k.name, Namespace: k.namespace, Labels: serviceLabels(w)},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: servicePorts(w),
		},
	}
	if len(m.v4) > 0 && len(m.v6) > 0 {
		// A dual-stack gateway is reachable on both families; a
		// single-stack cluster still gets a single-stack Service.
		svc.Spec.IPFamilyPolicy = new(corev1.IPFamilyPolicyPreferDualStack)
	}
	return svc
}

// serviceCurrent reports whether svc already matches w in everything the
// mirror owns: its labels (others may add their own), its ports (name, port,
// protocol; the apiserver defaults the rest) and the absent selector. Fields
// set only at creation are not compared, so replicas wanting the same set
// agree and never write.
func serviceCurrent(svc *corev1.Service, w want) bool {
	for k, v := range serviceLabels(w) {
		if svc.Labels[k] != v {
			return false
		}
	}
	if len(svc.Spec.Selector) > 0 || len(svc.Spec.Ports) != len(w.ports) {
		return false
	}
	for i, p := range servicePorts(w) {
		q := svc.Spec.Ports[i]
		if q.Name != p.Name || q.Port != p.Port || q.Protocol != p.Protocol {
			return false
		}
	}
	return true
}

// updatedService returns a copy of svc brought to w, keeping the fields the
// mirror does not own (cluster IPs, others' labels and annotations).
func updatedService(svc *corev1.Service, w want) *corev1.Service {
	svc = svc.DeepCopy()
	if svc.Labels == nil {
		svc.Labels = map[string]string{}
	}
	for k, v := range serviceLabels(w) {
		svc.Labels[k] = v
	}
	svc.Spec.Selector = nil
	svc.Spec.Ports = servicePorts(w)
	return svc
}

// newSlices returns this replica's EndpointSlices for k by name: one per
// address family the replica has.
func (m *Mirror) newSlices(k key, w want) map[string]*discoveryv1.EndpointSlice {
	out := make(map[string]*discoveryv1.EndpointSlice, 2)
	if len(m.v4) > 0 {
		s := m.newSlice(k, w, discoveryv1.AddressTypeIPv4, m.v4)
		out[s.Name] = s
	}
	if len(m.v6) > 0 {
		s := m.newSlice(k, w, discoveryv1.AddressTypeIPv6, m.v6)
		out[s.Name] = s
	}
	return out
}

func (m *Mirror) newSlice(k key, w want, at discoveryv1.AddressType, addrs []netip.Addr) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      sliceName(k.name, m.cfg.Replica, at == discoveryv1.AddressTypeIPv6),
			Namespace: k.namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: k.name,
				discoveryv1.LabelManagedBy:   SliceManager,
				LabelManagedBy:               ManagedBy,
				LabelReplica:                 m.cfg.Replica,
			},
			OwnerReferences: m.owners(),
		},
		AddressType: at,
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
		})
	}
	for _, p := range w.ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{
			Name:     new(portName(p)),
			Port:     new(int32(m.cfg.Port)),
			Protocol: new(corev1.ProtocolTCP),
		})
	}
	return s
}

// owners makes the replica's Pod the owner of its slices when its UID is
// known, so the garbage collector deletes them with the Pod. Neither
// controller nor blockOwnerDeletion is set: the slices are not the Pod's
// to manage, and blocking needs delete rights on pods.
func (m *Mirror) owners() []metav1.OwnerReference {
	if m.cfg.PodUID == "" {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: m.cfg.Replica, UID: types.UID(m.cfg.PodUID)}}
}

// sliceCurrent reports whether cur matches want in everything the mirror
// owns. Address type is immutable and compared by the caller.
func sliceCurrent(cur, want *discoveryv1.EndpointSlice) bool {
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	return equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) &&
		equality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		equality.Semantic.DeepEqual(cur.OwnerReferences, want.OwnerReferences)
}

// updatedSlice returns a copy of cur brought to want.
func updatedSlice(cur, want *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	cur = cur.DeepCopy()
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		cur.Labels[k] = v
	}
	cur.Endpoints, cur.Ports, cur.OwnerReferences = want.Endpoints, want.Ports, want.OwnerReferences
	return cur
}
