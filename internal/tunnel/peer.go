package tunnel

import (
	"github.com/ewgw/ewgw/internal/model"
	"slices"
	"sync"
	"time"
)

// PeerStatus is a snapshot of one configured peer.
type PeerStatus struct {
	// PeerInfo is what routing needs of the peer: Name, the configured
	// peer name; Cluster, that name once a hello repeated it (empty until
	// the first hello); Region, the configured one (Peer.Region), else the
	// one the latest hello claims; RTT, the smallest smoothed RTT among
	// live connections.
	model.PeerInfo
	// ID is the SPIFFE ID the peer last connected with.
	ID string
	// Up is true while at least one connection has completed its hello and
	// has not been told to go away; Open may use the peer.
	Up bool
	// Zone and Version are claims of the latest hello, for display only;
	// empty until the first hello.
	Zone, Version string
	// Exports are the services the peer announces, sorted by namespace
	// and name: the newest catalogue among its live connections, empty
	// when it has none. The list is the tunnel's own, shared and never
	// changed (a catalogue may hold 100,000 entries, and every change
	// makes the gateway read it): read it, never modify it.
	Exports []Export
	// Conns counts live connections, draining ones included; TCPConns
	// those of them on the TCP transport (the others are QUIC).
	Conns, TCPConns int
	// CongestionWindow is the sum of this side's congestion windows
	// (bytes) over live connections: how much it may have in flight
	// towards the peer.
	CongestionWindow uint64
	// PacketsSent and PacketsLost are summed over live connections;
	// their ratio is the path's loss as this side's loss detection sees
	// it (quic-go may later take back a loss it declared).
	PacketsSent, PacketsLost uint64
	// GSO reports whether any live connection sends with generic
	// segmentation offload.
	GSO bool
	// LastError is the last dial or connection error, nil if none.
	LastError error
	// Since is when the peer last came up; zero while down.
	Since time.Time
	// LastRedial is how long the last reconnect took, from losing the last
	// connection to the next being up; zero if the peer was never lost.
	LastRedial time.Duration
	// CertNotAfter is the latest expiry among the certificates the peer
	// presented on its live connections: after the peer rotates its SVID,
	// new connections show the new one.
	CertNotAfter time.Time
}

// peer is the live state of one configured peer.
type peer struct {
	cfg    Peer
	expect expectation

	mu         sync.Mutex
	conns      []*conn
	inbound    int // connections the peer dialled, from accept to close
	id         string
	remote     hello    // identity from the newest hello; no exports
	exports    []Export // the catalogue: see refresh
	lastErr    error
	since      time.Time
	lostAt     time.Time
	lastRedial time.Duration
	turn       int               // pick's round robin among ties
	pen        penalty           // penalty.go
	bundleGens map[uint64]uint64 // newest bundle generation received, by run instance (bundle.go)
}

// up reports whether any connection may carry new streams. p.mu held.
func (p *peer) up() bool {
	return slices.ContainsFunc(p.conns, func(c *conn) bool { return !c.draining.Load() })
}

// upChange is the outcome of a peer state change, for metrics.
type upChange struct {
	up, down bool          // the peer came up, or went down
	redial   time.Duration // set when it came back up after a loss
	lost     bool          // it came back after a loss (redial is valid)
}

// update runs f under p.mu and reports how the up state changed.
func (p *peer) update(f func()) upChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.up()
	f()
	now := p.up()
	var ch upChange
	switch {
	case !was && now:
		ch.up = true
		p.since = time.Now()
		if !p.lostAt.IsZero() {
			ch.lost, ch.redial = true, p.since.Sub(p.lostAt)
			p.lastRedial = ch.redial
			p.lostAt = time.Time{}
		}
	case was && !now:
		ch.down = true
		p.since = time.Time{}
		p.lostAt = time.Now()
	}
	return ch
}

// attachConn adds c, whose hello was h, to the peer's connections and
// reports whether the catalogue changed. p.mu held.
func (p *peer) attachConn(c *conn, h hello) bool {
	c.view = p.share(c, c.view)
	p.conns = append(p.conns, c)
	p.id = c.id
	p.lastErr = nil
	h.Exports = nil // the catalogue lives in the connections' views
	p.remote = h
	return p.refresh()
}

// share returns s, or the equal view that another connection of the same
// run holds, so that a peer's connections keep one copy of its catalogue
// between them rather than one each: views never change in place, and an
// honest peer sends every connection the same catalogue at a generation.
// p.mu held.
func (p *peer) share(c *conn, s snapshot) snapshot {
	for _, x := range p.conns {
		if x != c && x.instance == c.instance && x.view.Gen == s.Gen && exportsEqual(x.view.Exports, s.Exports) {
			return x.view
		}
	}
	return s
}

// refresh recomputes the peer's catalogue from its connections' views and
// reports whether it changed. p.mu held.
//
// Every connection carries the whole catalogue, so the views differ only
// while an update is in flight, and the newest generation wins.
// Generations only compare within one run of the peer: the run whose
// connection attached last is the current one, since an old run's
// connections linger until a stateless reset or the idle timeout closes
// them. With no live connection the catalogue is empty: nothing vouches
// for it any more.
func (p *peer) refresh() bool {
	var best *conn
	if n := len(p.conns); n > 0 {
		run := p.conns[n-1].instance
		for _, c := range p.conns {
			if c.instance == run && (best == nil || c.view.Gen > best.view.Gen) {
				best = c
			}
		}
	}
	var next []Export
	if best != nil {
		next = best.view.Exports
	}
	changed := !exportsEqual(p.exports, next)
	p.exports = next
	return changed
}

// pick returns a connection for a new stream, or nil: of the peer's runs
// (the gateways behind its name, told apart by the hello's Instance), the
// one carrying the fewest streams, and of that run's connections, the one
// carrying the fewest. Ties take turns, so that short streams, which
// rarely overlap, still spread over every replica and every connection
// rather than all going to the first connected. Connections draining or
// skipped (skip, when not nil) are passed over, and silent ones
// (conn.silent) unless no other is left: a connection taken for silent on
// a busy machine still carries streams. TCP connections are a fallback:
// they take new streams only while the peer has no QUIC connection to
// take them.
func (p *peer) pick(skip func(*conn) bool) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pass := range picks {
		if c := p.choose(skip, pass); c != nil {
			return c
		}
	}
	return nil
}

// pickPass is one pass of pick over a peer's connections.
type pickPass struct {
	quicOnly bool // TCP connections are a fallback: QUIC first
	silent   bool // take connections taken for silent
}

// picks are pick's passes, in order: QUIC connections, then any, then
// silent ones.
var picks = [...]pickPass{{quicOnly: true}, {}, {silent: true}}

// choose is one pass of pick. p.mu held.
func (p *peer) choose(skip func(*conn) bool, pass pickPass) *conn {
	var runs []run
	for _, c := range p.conns {
		if c.draining.Load() || (!pass.silent && c.silent()) || (skip != nil && skip(c)) ||
			(pass.quicOnly && c.sess.Transport() != TransportQUIC) {
			continue
		}
		i := slices.IndexFunc(runs, func(r run) bool { return r.instance == c.instance })
		if i < 0 {
			i, runs = len(runs), append(runs, run{instance: c.instance})
		}
		runs[i].streams += c.streams.Load()
		runs[i].conns = append(runs[i].conns, c)
	}
	if len(runs) == 0 {
		return nil
	}
	turn := p.turn
	p.turn++
	least := fewest(runs, func(r run) int64 { return r.streams })
	r := runs[least[turn%len(least)]]
	ties := fewest(r.conns, func(c *conn) int64 { return c.streams.Load() })
	return r.conns[ties[(turn/len(least))%len(ties)]]
}

// hasOther reports whether pick could choose a connection other than c.
func (p *peer) hasOther(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.conns, func(x *conn) bool { return x != c && !x.draining.Load() && !x.silent() })
}

// run is one of a peer's gateway processes, for pick.
type run struct {
	instance uint64
	streams  int64
	conns    []*conn
}

// fewest returns the indexes of the entries of list whose load is least.
func fewest[T any](list []T, load func(T) int64) []int {
	var out []int
	var min int64
	for i, v := range list {
		switch n := load(v); {
		case len(out) == 0 || n < min:
			out, min = append(out[:0], i), n
		case n == min:
			out = append(out, i)
		}
	}
	return out
}

// LossRatio is PacketsLost over PacketsSent, 0 before anything was sent.
func (s PeerStatus) LossRatio() float64 {
	if s.PacketsSent == 0 {
		return 0
	}
	return float64(s.PacketsLost) / float64(s.PacketsSent)
}

// enter counts a connection the peer dialled, unless max are open.
func (p *peer) enter(max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inbound >= max {
		return false
	}
	p.inbound++
	return true
}

// leave ends what enter counted.
func (p *peer) leave() {
	p.mu.Lock()
	p.inbound--
	p.mu.Unlock()
}

func (p *peer) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

func (p *peer) status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	region := p.remote.Region
	if p.cfg.Region != "" && p.remote.Cluster != "" {
		region = p.cfg.Region
	}
	s := PeerStatus{
		PeerInfo: model.PeerInfo{Name: p.cfg.Name, Cluster: p.remote.Cluster, Region: region},
		ID:       p.id, Up: p.up(), Zone: p.remote.Zone,
		Version: p.remote.Version, Exports: p.exports,
		Conns: len(p.conns), LastError: p.lastErr, Since: p.since, LastRedial: p.lastRedial,
	}
	for i, c := range p.conns {
		st := c.sess.Path()
		if c.sess.Transport() == TransportTCP {
			s.TCPConns++
		}
		if i == 0 || st.RTT < s.RTT {
			s.RTT = st.RTT
		}
		s.CongestionWindow += st.CongestionWindow
		s.PacketsSent += st.PacketsSent
		s.PacketsLost += st.PacketsLost
		s.GSO = s.GSO || st.GSO
		if certs := c.sess.TLS().PeerCertificates; len(certs) > 0 && certs[0].NotAfter.After(s.CertNotAfter) {
			s.CertNotAfter = certs[0].NotAfter
		}
	}
	return s
}

// applyChange updates metrics and notifies after a peer state change.
func (t *Tunnel) applyChange(p *peer, ch upChange) {
	switch {
	case ch.up:
		t.m.peersUp.Inc()
		if ch.lost {
			t.m.reconnects.Inc()
			t.m.redial.Observe(ch.redial.Seconds())
		}
		t.log.Info("peer up", "peer", p.cfg.Name, "redial", ch.redial)
	case ch.down:
		t.m.peersUp.Dec()
		t.log.Info("peer down", "peer", p.cfg.Name)
	}
	t.notify()
}
