package route

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
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
	// ReasonInvalidName: not a host name (IsHostName), e.g. a non-ASCII
	// letter or an empty label.
	ReasonInvalidName Reason = "invalid_name"
	// ReasonNotExported: the name's service is not exported, or not to
	// whoever asks: cluster-local, or restricted to other peers.
	ReasonNotExported Reason = "not_exported"
	// ReasonReserved: the cluster's own control plane (the kube-apiserver's
	// Service, the kube-* namespaces), which only a host rule can route.
	ReasonReserved Reason = "reserved"
)

// Table is an immutable routing table. Build a new one when services change
// and swap it in; readers never lock.
type Table struct {
	names    nameMatcher
	self     Self
	policy   Policy
	services map[model.ServiceKey]*Service
	remote   map[model.ServiceKey][]model.Export // exports of each service, by peer
	peers    map[string]model.PeerInfo
	spreads  sync.Map // Target → *spreadOf, filled on first use
}

// Self locates this gateway's cluster.
type Self struct {
	Cluster, Region string
}

// Input is everything a table is built from.
type Input struct {
	Names Names
	Self  Self
	// Policy is the default policy; services may override it.
	Policy Policy
	// Services are the local services one discovery source reports. Later
	// duplicates of a key replace earlier ones.
	Services []Service
	// Peers are the peers that are up, in configuration order.
	Peers []model.PeerInfo
	// Exports are what the peers that are up announced.
	Exports []model.Export
}

// NewTable builds a table. A zero Policy.Mode means Failover.
func NewTable(in Input) *Table {
	t := &Table{
		names:    compileNames(in.Names),
		self:     in.Self,
		policy:   in.Policy,
		services: make(map[model.ServiceKey]*Service, len(in.Services)),
		remote:   map[model.ServiceKey][]model.Export{},
		peers:    make(map[string]model.PeerInfo, len(in.Peers)),
	}
	if t.policy.Mode == "" {
		t.policy.Mode = Failover
	}
	for i := range in.Services {
		t.services[in.Services[i].Key] = &in.Services[i]
	}
	for _, p := range in.Peers {
		t.peers[p.Name] = p
	}
	for _, e := range in.Exports {
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

// Resolve maps a server name, from a client inside the cluster, to a port
// of a service exported here or by a peer, or named by a host rule. A name
// without a port resolves to the service's first port (the local
// service's, else the first exporting peer's). Export is the only door: a
// local service that is not exported is refused even where a peer exports
// one of the same name, and the cluster's own control plane (Reserved) is
// refused unless a host rule names it.
func (t *Table) Resolve(serverName string) (Target, Reason) {
	return t.resolve(serverName, false)
}

// ResolvePublic maps a server name from an unauthenticated client (the
// opt-in public passthrough) to a local service that is exported to every
// peer. Host rules apply only to such services, and peers' exports never.
func (t *Table) ResolvePublic(serverName string) (Target, Reason) {
	return t.resolve(serverName, true)
}

func (t *Table) resolve(serverName string, public bool) (Target, Reason) {
	tg, byHost, reason := t.names.match(serverName)
	if reason != "" {
		return Target{}, reason
	}
	if !byHost && Reserved(tg.Service) {
		return Target{}, ReasonReserved
	}
	svc, local := t.services[tg.Service]
	exports := t.remote[tg.Service]
	if !local && len(exports) == 0 && t.names.mirror != "" {
		// A mirror Service's name: route to the service it mirrors.
		if name, ok := strings.CutSuffix(tg.Service.Name, t.names.mirror); ok && name != "" {
			tg.Service.Name = name
			if Reserved(tg.Service) {
				return Target{}, ReasonReserved
			}
			svc, local = t.services[tg.Service]
			exports = t.remote[tg.Service]
		}
	}
	switch {
	case public && local && (!svc.Exported || !svc.Audience.Everyone()):
		return Target{}, ReasonNotExported
	case public && !local && len(exports) > 0:
		return Target{}, ReasonNotExported
	case public:
		exports = nil
	case local && !svc.Exported && !byHost:
		return Target{}, ReasonNotExported
	}
	if !local && len(exports) == 0 {
		return Target{}, ReasonUnknownService
	}
	if tg.Port == 0 {
		switch {
		case local && len(svc.Ports) > 0:
			tg.Port = svc.Ports[0].Port
		case len(exports) > 0 && len(exports[0].Ports) > 0:
			tg.Port = exports[0].Ports[0].Port
		default:
			return Target{}, ReasonUnknownPort
		}
	}
	if (!local || svc.port(tg.Port) == nil) && (public || len(t.Peers(tg)) == 0) {
		return Target{}, ReasonUnknownPort
	}
	return tg, ""
}

// Reserved reports whether k is part of the cluster's control plane:
// default/kubernetes (the kube-apiserver) or any service in a kube-*
// namespace (kube-system, kube-public, ...). Such services are never
// exported and never routed by their service names.
func Reserved(k model.ServiceKey) bool {
	return k == model.ServiceKey{Namespace: "default", Name: "kubernetes"} || strings.HasPrefix(k.Namespace, "kube-")
}

// Peers returns the peers that export tg's service and port, in the order
// their exports were given.
func (t *Table) Peers(tg Target) []string {
	var peers []string
	for _, e := range t.remote[tg.Service] {
		if slices.ContainsFunc(e.Ports, func(p model.ExportPort) bool { return p.Port == tg.Port }) {
			peers = append(peers, e.Peer)
		}
	}
	return peers
}

// ExportedTo reports whether the peer p may reach the local service of tg:
// it is exported, not Reserved, to an audience that admits p, and has the
// port.
func (t *Table) ExportedTo(tg Target, p audience.Peer) bool {
	svc, ok := t.services[tg.Service]
	return ok && svc.Exported && !Reserved(svc.Key) && svc.Audience.Allows(p) && svc.port(tg.Port) != nil
}

// Exports lists the local exported services, with the ports that have
// ready endpoints and how many, and who may reach them, for announcing to
// peers. A service whose last ready endpoint went is left out: peers
// withdraw it at once. Reserved services are never exported.
func (t *Table) Exports() []model.Export {
	var out []model.Export
	for _, svc := range t.services {
		if !svc.Exported || Reserved(svc.Key) {
			continue
		}
		e := svc.Export()
		e.Ports = slices.DeleteFunc(e.Ports, func(p model.ExportPort) bool { return p.Ready == 0 })
		if len(e.Ports) > 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b model.Export) int { return strings.Compare(a.Service.String(), b.Service.String()) })
	return out
}

// Service returns the service with key k.
func (t *Table) Service(k model.ServiceKey) (*Service, bool) {
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
