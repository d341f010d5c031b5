package kube

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ewgw/ewgw/internal/route"
)

// AnnotationExport on a Service, set to "true", exports it to peer clusters
// without an MCS ServiceExport.
const AnnotationExport = "ewgw.io/export"

// Labels of the import mirror's own objects (internal/discovery/mirror:
// LabelManagedBy, ManagedBy, LabelMirrorOf and SliceManager). A mirror
// Service's endpoints are the gateway itself, so it is never a local
// service: routing to it would loop.
const (
	labelManagedBy     = "app.kubernetes.io/managed-by"
	managedByEwgw      = "ewgw"
	labelMirrorOf      = "ewgw.io/mirror-of"
	mirrorSliceManager = "mirror.ewgw.io"
)

// service is what the gateway keeps of a Service.
type service struct {
	ports    []namedPort // TCP ports in spec order
	exported bool        // AnnotationExport is "true"
	policy   *route.Policy
}

// namedPort is a service port or an EndpointSlice port: name and number.
type namedPort struct {
	name string
	port uint16
}

// slice is what the gateway keeps of an EndpointSlice.
type slice struct {
	ports     []namedPort // TCP ports with a number
	endpoints []endpoint
}

type endpoint struct {
	addr  netip.Addr
	ready bool
	// fallback: serving and terminating, used when a port has no ready
	// endpoint.
	fallback bool
}

// serviceFrom converts a Service. ok is false for services the gateway does
// not route: ExternalName services, those without a TCP port, and the
// import mirror's Services. err
// reports policy annotations that do not parse; the service then has the
// default (nil) policy.
func serviceFrom(svc *corev1.Service) (s service, ok bool, err error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || isMirror(svc.Labels) {
		return service{}, false, nil
	}
	for _, p := range svc.Spec.Ports {
		if isTCP(p.Protocol) {
			s.ports = append(s.ports, namedPort{name: p.Name, port: uint16(p.Port)})
		}
	}
	if len(s.ports) == 0 {
		return service{}, false, nil
	}
	s.exported = svc.Annotations[AnnotationExport] == "true"
	if s.policy, err = route.ParseAnnotations(svc.Annotations); err != nil {
		s.policy = nil // ParseAnnotations returns the invalid policy too
	}
	return s, true, err
}

// sliceFrom converts an EndpointSlice. ok is false for slices that belong
// to no service and for FQDN slices.
func sliceFrom(es *discoveryv1.EndpointSlice) (key route.ServiceKey, s slice, ok bool) {
	name := es.Labels[discoveryv1.LabelServiceName]
	if name == "" || (es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6) {
		return key, s, false
	}
	for _, p := range es.Ports {
		if p.Port != nil && isTCP(derefOr(p.Protocol, corev1.ProtocolTCP)) {
			s.ports = append(s.ports, namedPort{name: derefOr(p.Name, ""), port: uint16(*p.Port)})
		}
	}
	for _, e := range es.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		addr, err := netip.ParseAddr(e.Addresses[0])
		if err != nil {
			continue // the apiserver validates addresses; nothing to route to
		}
		c := e.Conditions
		ready := derefOr(c.Ready, true)
		s.endpoints = append(s.endpoints, endpoint{
			addr:     addr.Unmap(),
			ready:    ready,
			fallback: !ready && derefOr(c.Serving, true) && derefOr(c.Terminating, false),
		})
	}
	return route.ServiceKey{Namespace: es.Namespace, Name: name}, s, true
}

// convert builds the routing model of one service from its slices.
func convert(key route.ServiceKey, svc *service, eps []*slice, exported bool) route.Service {
	rs := route.Service{
		Key:      key,
		Ports:    make([]route.Port, len(svc.ports)),
		Exported: exported || svc.exported,
		Policy:   svc.policy,
	}
	for i, p := range svc.ports {
		rs.Ports[i] = route.Port{Port: p.port, Endpoints: endpointsFor(p.name, eps)}
	}
	return rs
}

// endpointsFor returns the sorted, distinct endpoints of the service port
// named name: the ready ones, else the serving and terminating ones.
func endpointsFor(name string, eps []*slice) []netip.AddrPort {
	ready := map[netip.AddrPort]bool{}
	fallback := map[netip.AddrPort]bool{}
	for _, s := range eps {
		i := slices.IndexFunc(s.ports, func(p namedPort) bool { return p.name == name })
		if i < 0 {
			continue
		}
		for _, e := range s.endpoints {
			ap := netip.AddrPortFrom(e.addr, s.ports[i].port)
			switch {
			case e.ready:
				ready[ap] = true
			case e.fallback:
				fallback[ap] = true
			}
		}
	}
	pick := ready
	if len(pick) == 0 {
		pick = fallback
	}
	if len(pick) == 0 {
		return nil
	}
	return slices.SortedFunc(maps.Keys(pick), netip.AddrPort.Compare)
}

// isMirror reports whether a Service's labels are those of a mirror
// Service the gateway wrote.
func isMirror(labels map[string]string) bool {
	return labels[labelManagedBy] == managedByEwgw && labels[labelMirrorOf] != ""
}

// isTCP reports whether a port protocol is TCP; empty means TCP.
func isTCP(p corev1.Protocol) bool { return p == "" || p == corev1.ProtocolTCP }

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
