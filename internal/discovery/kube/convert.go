package kube

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
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
	to       exportTo // the Service's audience.Annotation
}

// exportTo is a parsed audience.Annotation. An annotation that does not
// parse exports to no one: a typo must not widen who may reach a service.
type exportTo struct {
	set, bad bool
	aud      audience.Audience
}

// parseExportTo reads audience.Annotation from ann.
func parseExportTo(ann map[string]string) (exportTo, error) {
	v, ok := ann[audience.Annotation]
	if !ok {
		return exportTo{}, nil
	}
	a, err := audience.ParseList(v)
	if err != nil {
		return exportTo{set: true, bad: true}, fmt.Errorf("%s: %w", audience.Annotation, err)
	}
	return exportTo{set: true, aud: a}, nil
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
	// skipped counts the endpoints left out, by reason (endpointReason).
	skipped map[string]int
}

// Reasons an endpoint address from an EndpointSlice is never dialled: the
// gateway's own host, its node's link-local services (the cloud metadata
// endpoint at 169.254.169.254 among them), addresses that name no single
// host, and addresses outside the configured endpoint CIDRs. Anyone who may
// write an EndpointSlice (or a selectorless Service's endpoints) could
// otherwise point the gateway there (the CVE-2021-25740 class).
const (
	skipLoopback    = "loopback"
	skipLinkLocal   = "link_local"
	skipUnspecified = "unspecified"
	skipMulticast   = "multicast"
	skipOutsideCIDR = "outside_cidrs"
)

// endpointReason says why addr must not be dialled, or "" when it may be.
// allowed, when not empty, are the only prefixes endpoints may be in.
func endpointReason(addr netip.Addr, allowed []netip.Prefix) string {
	switch {
	case addr.IsLoopback():
		return skipLoopback
	case addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return skipMulticast
	case addr.IsLinkLocalUnicast():
		return skipLinkLocal
	case addr.IsUnspecified():
		return skipUnspecified
	case len(allowed) > 0 && !slices.ContainsFunc(allowed, func(p netip.Prefix) bool { return p.Contains(addr) }):
		return skipOutsideCIDR
	}
	return ""
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
	var toErr error
	s.to, toErr = parseExportTo(svc.Annotations)
	return s, true, errors.Join(err, toErr)
}

// sliceFrom converts an EndpointSlice. ok is false for slices that belong
// to no service and for FQDN slices. Endpoints whose address must not be
// dialled (endpointReason, with allowed) are left out and counted in
// s.skipped.
func sliceFrom(es *discoveryv1.EndpointSlice, allowed []netip.Prefix) (key model.ServiceKey, s slice, ok bool) {
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
		addr = addr.Unmap()
		if reason := endpointReason(addr, allowed); reason != "" {
			if s.skipped == nil {
				s.skipped = map[string]int{}
			}
			s.skipped[reason]++
			continue
		}
		c := e.Conditions
		ready := derefOr(c.Ready, true)
		s.endpoints = append(s.endpoints, endpoint{
			addr:     addr,
			ready:    ready,
			fallback: !ready && derefOr(c.Serving, true) && derefOr(c.Terminating, false),
		})
	}
	return model.ServiceKey{Namespace: es.Namespace, Name: name}, s, true
}

// convert builds the routing model of one service from its slices. export
// is its ServiceExport, nil without one. The ServiceExport's audience
// annotation, where it has one, wins over the Service's; one that does not
// parse leaves the service unexported.
func convert(key model.ServiceKey, svc *service, eps []*slice, export *exportTo) route.Service {
	to := svc.to
	if export != nil && export.set {
		to = *export
	}
	rs := route.Service{
		Key:      key,
		Ports:    make([]route.Port, len(svc.ports)),
		Exported: (export != nil || svc.exported) && !to.bad,
		Audience: to.aud,
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
