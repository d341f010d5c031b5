package route

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Reason says why a server name did not resolve. Reasons are a small fixed
// set, safe to use as metric labels.
type Reason string

// Reasons a name does not resolve.
const (
	ReasonNoSNI          Reason = "no_sni"
	ReasonIPLiteral      Reason = "ip_literal"
	ReasonUnknownName    Reason = "unknown_name"
	ReasonUnknownService Reason = "unknown_service"
	ReasonUnknownPort    Reason = "unknown_port"
)

// Table is an immutable routing table. Build a new one when services change
// and swap it in; readers never lock.
type Table struct {
	names    nameMatcher
	services map[ServiceKey]*Service
	remote   map[ServiceKey][]Export // exports of each service, by peer
}

// Export is a service that a peer cluster's gateway offers to this one.
type Export struct {
	// Peer names the peer gateway.
	Peer string
	// Service is the exported service.
	Service ServiceKey
	// Ports are its ports, the first the default.
	Ports []uint16
}

// NewTable builds a table from the local services one discovery source
// reports, and the exports peers announced. Later duplicates of a local key
// replace earlier ones.
func NewTable(names Names, services []Service, exports ...Export) *Table {
	t := &Table{
		names:    compileNames(names),
		services: make(map[ServiceKey]*Service, len(services)),
		remote:   map[ServiceKey][]Export{},
	}
	for i := range services {
		t.services[services[i].Key] = &services[i]
	}
	for _, e := range exports {
		t.remote[e.Service] = append(t.remote[e.Service], e)
	}
	return t
}

// ValidateNames reports every problem with a Names configuration at once.
func ValidateNames(n Names) error {
	var errs []error
	for _, h := range n.Hosts {
		if err := validateHostMatch(h.Match); err != nil {
			errs = append(errs, err)
		}
		if h.Target.Service.Name == "" || h.Target.Service.Namespace == "" {
			errs = append(errs, fmt.Errorf("host %q: target service needs a namespace and a name", h.Match))
		}
	}
	return errors.Join(errs...)
}

// Resolve maps a server name to a port of a service known locally or
// exported by a peer. A name without a port resolves to the service's first
// port (the local service's, else the first exporting peer's).
func (t *Table) Resolve(serverName string) (Target, Reason) {
	tg, reason := t.names.match(serverName)
	if reason != "" {
		return Target{}, reason
	}
	svc, local := t.services[tg.Service]
	exports := t.remote[tg.Service]
	if !local && len(exports) == 0 {
		return Target{}, ReasonUnknownService
	}
	if tg.Port == 0 {
		switch {
		case local && len(svc.Ports) > 0:
			tg.Port = svc.Ports[0].Port
		case len(exports) > 0 && len(exports[0].Ports) > 0:
			tg.Port = exports[0].Ports[0]
		default:
			return Target{}, ReasonUnknownPort
		}
	}
	if (!local || svc.port(tg.Port) == nil) && len(t.Peers(tg)) == 0 {
		return Target{}, ReasonUnknownPort
	}
	return tg, ""
}

// Peers returns the peers that export tg's service and port, in the order
// their exports were given.
func (t *Table) Peers(tg Target) []string {
	var peers []string
	for _, e := range t.remote[tg.Service] {
		if slices.Contains(e.Ports, tg.Port) {
			peers = append(peers, e.Peer)
		}
	}
	return peers
}

// Exported reports whether the local service of tg is exported and has the
// port: whether a peer may reach it.
func (t *Table) Exported(tg Target) bool {
	svc, ok := t.services[tg.Service]
	return ok && svc.Exported && svc.port(tg.Port) != nil
}

// Exports lists the local exported services and their ports, for announcing
// to peers.
func (t *Table) Exports() []Export {
	var out []Export
	for _, svc := range t.services {
		if !svc.Exported {
			continue
		}
		e := Export{Service: svc.Key}
		for _, p := range svc.Ports {
			e.Ports = append(e.Ports, p.Port)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Export) int { return strings.Compare(a.Service.String(), b.Service.String()) })
	return out
}

// Service returns the service with key k.
func (t *Table) Service(k ServiceKey) (*Service, bool) {
	s, ok := t.services[k]
	return s, ok
}

// Endpoints returns the local ready endpoints of a target. The slice is shared
// and must not be modified.
func (t *Table) Endpoints(tg Target) []netip.AddrPort {
	svc, ok := t.services[tg.Service]
	if !ok {
		return nil
	}
	if p := svc.port(tg.Port); p != nil {
		return p.Endpoints
	}
	return nil
}
