package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/status"
)

// report is the gateway's status report; name, when set, adds the routing
// decision for that server name.
func (gw *Gateway) report(name string) status.Report {
	gw.mu.Lock()
	local := gw.local
	gw.mu.Unlock()
	r := status.Report{Cluster: gw.cfg.Cluster, Region: gw.cfg.Region, Peers: []status.Peer{}, Exported: []status.Service{}, Imported: []status.Service{}}
	if err := gw.ready(); err != nil {
		r.NotReady = err.Error()
	}
	for _, s := range local {
		if !s.Exported {
			continue
		}
		c := status.Cluster{Cluster: gw.cfg.Cluster, Ports: s.Export().Ports}
		r.Exported = append(r.Exported, status.Service{Service: s.Key.String(), Clusters: []status.Cluster{c}})
	}
	slices.SortFunc(r.Exported, func(a, b status.Service) int { return strings.Compare(a.Service, b.Service) })
	if gw.peering != nil {
		r.Peers, r.Imported = gw.peering.report()
		r.Identity = identityStatus(gw.peering.ident.Expiry())
	}
	if name != "" {
		r.Decision = decision(name, gw.table.Load().Decide(name))
	}
	return r
}

// report lists the peers and what each exports.
func (pr *peering) report() ([]status.Peer, []status.Service) {
	var peers []status.Peer
	imported := map[string]*status.Service{}
	for _, p := range pr.tun.Peers() {
		sp := status.Peer{Name: p.Name, ID: p.ID, Up: p.Up, Cluster: p.Cluster, Region: p.Region,
			RTTMillis: float64(p.RTT.Microseconds()) / 1000, CwndBytes: p.CongestionWindow, LossPercent: 100 * p.LossRatio(),
			Conns: p.Conns, TCPConns: p.TCPConns, Since: p.Since, CertNotAfter: p.CertNotAfter}
		if p.LastError != nil {
			sp.LastError = p.LastError.Error()
		}
		peers = append(peers, sp)
		if !p.Up {
			continue
		}
		for _, e := range p.Exports {
			key := e.Service.String()
			s := imported[key]
			if s == nil {
				s = &status.Service{Service: key}
				imported[key] = s
			}
			s.Clusters = append(s.Clusters, status.Cluster{Cluster: p.Cluster, Peer: p.Name, Ports: e.Ports})
		}
	}
	out := make([]status.Service, 0, len(imported))
	for _, s := range imported {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b status.Service) int { return cmp.Compare(a.Service, b.Service) })
	return peers, out
}

func decision(name string, d route.Decision) *status.Decision {
	out := &status.Decision{Name: name, Refused: string(d.Reason), Mode: string(d.Mode)}
	if d.Reason != "" {
		return out
	}
	out.Target = fmt.Sprintf("%s:%d", d.Target.Service, d.Target.Port)
	for _, c := range d.Candidates {
		out.Candidates = append(out.Candidates, status.Candidate{Cluster: c.Cluster, Peer: c.Peer, Region: c.Region, Ready: c.Ready, Share: c.Share})
	}
	return out
}
