package route

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/ewgw/ewgw/internal/model"
	"slices"
	"strconv"
	"strings"
)

// Mode says how connections to a service spread over the clusters that
// serve it. Same-named exported services in several clusters are one
// service; the mode picks among its clusters.
type Mode string

// Modes.
const (
	// Failover keeps traffic local while a local endpoint is ready, then
	// goes to the clusters of the regions in the failover priority list,
	// then to the nearest peer by measured RTT.
	Failover Mode = "failover"
	// Distribute splits connections from this gateway's region over
	// destination regions by weight (e.g. 90 local, 10 to another region).
	Distribute Mode = "distribute"
	// ActiveActive splits connections over clusters in proportion to their
	// ready endpoints.
	ActiveActive Mode = "active-active"
	// Primary sends everything to the first cluster of an ordered list that
	// serves the service.
	Primary Mode = "primary"
)

// AnyRegion keys a failover list or weight set that applies from every
// source region without one of its own.
const AnyRegion = "*"

// Policy is a traffic policy: the gateway's default, or a service's
// override (annotations). Every mode falls back to the failover order when
// its first choice fails, so a connection is never lost to policy.
type Policy struct {
	Mode Mode
	// FailoverRegions maps a source region (or AnyRegion) to the regions to
	// fail over to, in priority order.
	FailoverRegions map[string][]string
	// Weights maps a source region (or AnyRegion) to weights per destination
	// region, for Distribute.
	Weights map[string]map[string]uint32
	// Clusters is the ordered cluster list for Primary.
	Clusters []string
}

// Annotations that override the gateway's default policy for one service.
const (
	AnnotationPolicy     = "ewgw.io/policy"     // a Mode
	AnnotationFailover   = "ewgw.io/failover"   // "region-b,region-c": failover regions from any region
	AnnotationDistribute = "ewgw.io/distribute" // "region-a=90,region-b=10": weights from any region
	AnnotationPrimary    = "ewgw.io/primary"    // "cluster-a,cluster-b"
)

// ParseAnnotations reads a service's policy annotations. It returns nil
// when there are none. Weights or a primary list without an explicit mode
// imply that mode.
func ParseAnnotations(ann map[string]string) (*Policy, error) {
	mode, hasMode := ann[AnnotationPolicy]
	fo, hasFO := ann[AnnotationFailover]
	dist, hasDist := ann[AnnotationDistribute]
	prim, hasPrim := ann[AnnotationPrimary]
	if !hasMode && !hasFO && !hasDist && !hasPrim {
		return nil, nil
	}
	p := &Policy{Mode: Mode(strings.TrimSpace(mode))}
	var errs []error
	if hasFO {
		p.FailoverRegions = map[string][]string{AnyRegion: splitList(fo)}
	}
	if hasDist {
		w, err := parseWeights(dist)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", AnnotationDistribute, err))
		}
		p.Weights = map[string]map[string]uint32{AnyRegion: w}
		if p.Mode == "" {
			p.Mode = Distribute
		}
	}
	if hasPrim {
		p.Clusters = splitList(prim)
		if p.Mode == "" {
			p.Mode = Primary
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, p.Validate()
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseWeights parses "region=weight,region=weight".
func parseWeights(s string) (map[string]uint32, error) {
	w := map[string]uint32{}
	for _, f := range splitList(s) {
		region, num, ok := strings.Cut(f, "=")
		region = strings.TrimSpace(region)
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
		if !ok || region == "" || err != nil {
			return nil, fmt.Errorf("%q is not region=weight", f)
		}
		if _, dup := w[region]; dup {
			return nil, fmt.Errorf("region %q given twice", region)
		}
		w[region] = uint32(n)
	}
	return w, nil
}

// Validate reports every problem with a policy at once. An empty Mode is
// allowed in an override (it keeps the default's mode).
func (p *Policy) Validate() error {
	var errs []error
	switch p.Mode {
	case "", Failover, ActiveActive:
	case Distribute:
		if len(p.Weights) == 0 {
			errs = append(errs, errors.New("distribute: needs weights per destination region"))
		}
	case Primary:
		if len(p.Clusters) == 0 {
			errs = append(errs, errors.New("primary: needs an ordered list of clusters"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown mode %q (want %s, %s, %s or %s)", p.Mode, Failover, Distribute, ActiveActive, Primary))
	}
	for src, w := range p.Weights {
		var sum uint64
		for _, v := range w {
			sum += uint64(v)
		}
		if sum == 0 {
			errs = append(errs, fmt.Errorf("distribute from %q: weights add up to zero", src))
		}
	}
	for i, c := range p.Clusters {
		if slices.Contains(p.Clusters[:i], c) {
			errs = append(errs, fmt.Errorf("primary: cluster %q listed twice", c))
		}
	}
	return errors.Join(errs...)
}

// merge returns base with the fields o sets replaced.
func (base Policy) merge(o *Policy) Policy {
	if o == nil {
		return base
	}
	if o.Mode != "" {
		base.Mode = o.Mode
	}
	if o.FailoverRegions != nil {
		base.FailoverRegions = o.FailoverRegions
	}
	if o.Weights != nil {
		base.Weights = o.Weights
	}
	if o.Clusters != nil {
		base.Clusters = o.Clusters
	}
	return base
}

// forRegion returns m's entry for region, else its AnyRegion entry.
func forRegion[V any](m map[string]V, region string) V {
	if v, ok := m[region]; ok {
		return v
	}
	return m[AnyRegion]
}

// Hop is one cluster a connection may go to.
type Hop struct {
	// Peer names the peer gateway; empty for this cluster's own endpoints.
	Peer string
	// Cluster and Region locate the hop.
	Cluster, Region string
	// Ready counts the cluster's ready endpoints for the port.
	Ready int
}

// Local reports whether the hop is this cluster.
func (h Hop) Local() bool { return h.Peer == "" }

// Candidate is a hop and the share of new connections that go there first.
type Candidate struct {
	Hop
	Share float64
}

// Decision explains how a server name routes, for status pages.
type Decision struct {
	Target Target
	Reason Reason
	Mode   Mode
	// Candidates are every cluster serving the target, in fallback order,
	// each with the share of connections it receives first.
	Candidates []Candidate
}

// Plan returns where a connection to tg goes, first choice first, then
// every other cluster serving it in fallback order. pick, uniform in [0,1),
// draws the weighted first choice of distribute and active-active. Only
// clusters with ready endpoints for the port appear.
func (t *Table) Plan(tg Target, pick float64) []Hop {
	_, order, shares := t.spread(tg)
	if len(order) == 0 {
		return nil
	}
	first := sample(shares, pick)
	plan := make([]Hop, 0, len(order))
	plan = append(plan, order[first])
	plan = append(plan, order[:first]...)
	return append(plan, order[first+1:]...)
}

// Decide resolves serverName and explains where its connections go.
func (t *Table) Decide(serverName string) Decision {
	tg, reason := t.Resolve(serverName)
	d := Decision{Target: tg, Reason: reason}
	if reason != "" {
		return d
	}
	var order []Hop
	var shares []float64
	d.Mode, order, shares = t.spread(tg)
	var sum float64
	for _, s := range shares {
		sum += s
	}
	for i, h := range order {
		d.Candidates = append(d.Candidates, Candidate{Hop: h, Share: shares[i] / sum})
	}
	return d
}

// sample returns the index that pick falls on in the cumulative shares.
func sample(shares []float64, pick float64) int {
	var sum float64
	for _, s := range shares {
		sum += s
	}
	x := pick * sum
	for i, s := range shares {
		if x < s {
			return i
		}
		x -= s
	}
	// Rounding, or all shares zero: the last non-zero share, else the first.
	for i := len(shares) - 1; i >= 0; i-- {
		if shares[i] > 0 {
			return i
		}
	}
	return 0
}

// spread returns tg's policy mode, the clusters serving tg in fallback
// order, and the weight of each as a first choice (not normalised; at least
// one positive when order is not empty).
func (t *Table) spread(tg Target) (Mode, []Hop, []float64) {
	// A table never changes, so each target's spread is worked out once,
	// by its first connection, rather than for every connection.
	if s, ok := t.spreads.Load(tg); ok {
		s := s.(*spreadOf)
		return s.mode, s.order, s.shares
	}
	mode, order, shares := t.computeSpread(tg)
	t.spreads.Store(tg, &spreadOf{mode, order, shares})
	return mode, order, shares
}

// spreadOf is a target's cached spread.
type spreadOf struct {
	mode   Mode
	order  []Hop
	shares []float64
}

// computeSpread is spread without the cache.
func (t *Table) computeSpread(tg Target) (Mode, []Hop, []float64) {
	pol := t.policy
	if svc, ok := t.services[tg.Service]; ok {
		pol = pol.merge(svc.Policy)
	}
	hops := t.hops(tg)
	order := t.fallbackOrder(pol, hops)
	shares := make([]float64, len(order))
	if len(order) == 0 {
		return pol.Mode, nil, nil
	}
	switch pol.Mode {
	case Distribute:
		weights := forRegion(pol.Weights, t.self.Region)
		seen := map[string]bool{}
		for i, h := range order {
			// The region's share goes to its first cluster in fallback
			// order: this cluster in its own region, else the nearest.
			if !seen[h.Region] {
				seen[h.Region] = true
				shares[i] = float64(weights[h.Region])
			}
		}
	case ActiveActive:
		for i, h := range order {
			shares[i] = float64(h.Ready)
		}
	}
	if !slices.ContainsFunc(shares, func(s float64) bool { return s > 0 }) {
		shares[0] = 1 // failover, primary, or no weighted region serves tg
	}
	return pol.Mode, order, shares
}

// hops lists the clusters with ready endpoints for tg: this one first, then
// peers in configuration order.
func (t *Table) hops(tg Target) []Hop {
	var hops []Hop
	if n := len(t.Endpoints(tg)); n > 0 {
		hops = append(hops, Hop{Cluster: t.self.Cluster, Region: t.self.Region, Ready: n})
	}
	for _, e := range t.remote[tg.Service] {
		if i := slices.IndexFunc(e.Ports, func(p model.ExportPort) bool { return p.Port == tg.Port }); i >= 0 && e.Ports[i].Ready > 0 {
			pi := t.peers[e.Peer]
			hops = append(hops, Hop{Peer: e.Peer, Cluster: pi.Cluster, Region: pi.Region, Ready: e.Ports[i].Ready})
		}
	}
	return hops
}

// fallbackOrder orders hops for pol. Failover order: this cluster; then the
// clusters of each region in the failover priority list, nearest first;
// then every other peer, nearest first. Primary puts its listed clusters
// first, in list order.
func (t *Table) fallbackOrder(pol Policy, hops []Hop) []Hop {
	rank := func(h Hop) int {
		if h.Local() {
			return 0
		}
		if i := slices.Index(forRegion(pol.FailoverRegions, t.self.Region), h.Region); i >= 0 {
			return 1 + i
		}
		return 1 << 20
	}
	order := slices.Clone(hops)
	slices.SortStableFunc(order, func(a, b Hop) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(t.peers[a.Peer].RTT, t.peers[b.Peer].RTT))
	})
	if pol.Mode == Primary {
		listed := func(h Hop) int {
			if i := slices.Index(pol.Clusters, h.Cluster); i >= 0 {
				return i
			}
			return len(pol.Clusters)
		}
		slices.SortStableFunc(order, func(a, b Hop) int { return cmp.Compare(listed(a), listed(b)) })
	}
	return order
}
