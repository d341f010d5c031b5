package route

import (
	"errors"
	"fmt"
	"net/netip"
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
}

// NewTable builds a table from the services one discovery source reports.
// Later duplicates of a key replace earlier ones.
func NewTable(names Names, services []Service) *Table {
	t := &Table{names: compileNames(names), services: make(map[ServiceKey]*Service, len(services))}
	for i := range services {
		t.services[services[i].Key] = &services[i]
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

// Resolve maps a server name to a service port of a known service. A name
// without a port resolves to the service's first port.
func (t *Table) Resolve(serverName string) (Target, Reason) {
	tg, reason := t.names.match(serverName)
	if reason != "" {
		return Target{}, reason
	}
	svc, ok := t.services[tg.Service]
	if !ok {
		return Target{}, ReasonUnknownService
	}
	if tg.Port == 0 {
		if len(svc.Ports) == 0 {
			return Target{}, ReasonUnknownPort
		}
		tg.Port = svc.Ports[0].Port
	}
	if svc.port(tg.Port) == nil {
		return Target{}, ReasonUnknownPort
	}
	return tg, ""
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
