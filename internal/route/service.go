// Package route maps TLS server names to services and holds the immutable
// routing table that the proxy consults for every connection. It does no I/O:
// discovery sources build a Table, the gateway swaps it in atomically.
package route

import (
	"net/netip"
	"slices"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
)

// Target is a service and one of its ports: what a server name resolves to.
type Target struct {
	Service model.ServiceKey
	Port    uint16
}

// Port is one service port and the ready endpoints behind it. Endpoints carry
// their own (target) port, which may differ from the service port.
type Port struct {
	Port      uint16
	Endpoints []netip.AddrPort
}

// Service is one service as a discovery source sees it: the same shape comes
// from the static file source and from Kubernetes EndpointSlices.
type Service struct {
	Key model.ServiceKey
	// Ports lists the service ports; the first is the default for server
	// names that do not carry a port.
	Ports []Port
	// Exported marks a service that peers in other clusters may reach. A
	// service that is not exported is cluster-local.
	Exported bool
	// Audience is who among the peers may reach an exported service; the
	// zero Audience is every allowed peer.
	Audience audience.Audience
	// Policy overrides the gateway's default policy for this service (from
	// its annotations); nil keeps the default.
	Policy *Policy
}

// Export is s as its cluster exports it: every port with its count of
// ready endpoints, and its audience.
func (s *Service) Export() model.Export {
	e := model.Export{Service: s.Key, Audience: s.Audience}
	for _, p := range s.Ports {
		e.Ports = append(e.Ports, model.ExportPort{Port: p.Port, Ready: len(p.Endpoints)})
	}
	return e
}

// port returns the Port entry for p, or nil.
func (s *Service) port(p uint16) *Port {
	i := slices.IndexFunc(s.Ports, func(x Port) bool { return x.Port == p })
	if i < 0 {
		return nil
	}
	return &s.Ports[i]
}
