package tunnel

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Handshake admission on the peering surface, which anyone on the internet
// can reach. A QUIC Initial costs the server a connection, goroutines and a
// signature until the handshake completes or times out (HandshakeTimeout),
// and its source address may be spoofed. So (RFC 9000 §8.1):
//
//   - once RetryAbove handshakes are in flight, a new one must first prove
//     its address with a Retry round trip (stateless for the server);
//   - at most MaxHandshakes are in flight at once, and at most
//     MaxHandshakesPerSource from one proven address; more are refused
//     (CONNECTION_REFUSED) without any cryptography.
//
// An address is proven by a Retry or a token from an earlier connection;
// unproven addresses count only towards the global cap, so a spoofer cannot
// use up an honest peer's per-source share.
//
// Before all that, an Initial from an address a penalised peer connected
// from is refused while the penalty lasts (sources, below).
//
// quic-go does this through Transport.VerifySourceAddress and ConnContext;
// the fork is not patched for it.

// Reasons a handshake was refused, the "reason" label of
// ewgw_tunnel_handshakes_refused_total.
const (
	admitBusy       = "busy"        // MaxHandshakes in flight
	admitSourceBusy = "source_busy" // MaxHandshakesPerSource from a proven address
	admitPenalised  = "penalised"   // an address of a penalised peer (sources)
)

var (
	errAdmission = errors.New("too many handshakes in flight")
	errPenalised = errors.New("address of a penalised peer")
)

// admission counts handshakes in flight, from the first Initial quic-go
// accepts to Accept returning the connection or the connection ending.
type admission struct {
	t                      *Tunnel
	retryAbove, max, perIP int

	mu       sync.Mutex
	n        int
	bySource map[netip.Addr]int
}

type handshakeKey struct{}

// handshake is one connection's place in the count.
type handshake struct {
	once sync.Once
	a    *admission
	src  netip.Addr // valid when it counts towards a source
}

func newAdmission(t *Tunnel) *admission {
	return &admission{t: t, retryAbove: t.cfg.RetryAbove, max: t.cfg.MaxHandshakes,
		perIP: t.cfg.MaxHandshakesPerSource, bySource: map[netip.Addr]int{}}
}

// verifySource is Transport.VerifySourceAddress: Retry once busy.
func (a *admission) verifySource(net.Addr) bool {
	a.mu.Lock()
	retry := a.n >= a.retryAbove
	a.mu.Unlock()
	if retry {
		a.t.m.retries.Inc()
	}
	return retry
}

// connContext is Transport.ConnContext: it admits a new connection or
// refuses it, and ties its place in the count to its context.
func (a *admission) connContext(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	if a.t.srcs.banned(ci.RemoteAddr, a.t.cfg.now()) {
		a.t.m.handshakesRefused.WithLabelValues(admitPenalised).Inc()
		return nil, errPenalised
	}
	h := &handshake{a: a}
	if ci.AddrVerified {
		if ua, ok := ci.RemoteAddr.(*net.UDPAddr); ok {
			h.src = ua.AddrPort().Addr().Unmap()
		}
	}
	if reason := a.enter(h.src); reason != "" {
		a.t.m.handshakesRefused.WithLabelValues(reason).Inc()
		return nil, errAdmission
	}
	ctx = context.WithValue(ctx, handshakeKey{}, h)
	context.AfterFunc(ctx, h.done) // the handshake failed or timed out
	return ctx, nil
}

// enter takes a place for a handshake from src (zero when unproven), or
// returns why not.
func (a *admission) enter(src netip.Addr) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.n >= a.max:
		return admitBusy
	case src.IsValid() && a.bySource[src] >= a.perIP:
		return admitSourceBusy
	}
	a.n++
	if src.IsValid() {
		a.bySource[src]++
	}
	a.t.m.handshakesInFlight.Set(float64(a.n))
	return ""
}

// handshakeDone ends qc's handshake in the count, once Accept returned it.
func handshakeDone(qc *quic.Conn) {
	if h, ok := qc.Context().Value(handshakeKey{}).(*handshake); ok {
		h.done()
	}
}

func (h *handshake) done() {
	h.once.Do(func() {
		a := h.a
		a.mu.Lock()
		defer a.mu.Unlock()
		a.n--
		if h.src.IsValid() {
			if a.bySource[h.src]--; a.bySource[h.src] == 0 {
				delete(a.bySource, h.src)
			}
		}
		a.t.m.handshakesInFlight.Set(float64(a.n))
	})
}

// Penalised sources. A penalised peer's new connections are refused right
// after the handshake (penalty.go), since only the handshake says who the
// peer is; but a peer that reconnects at once still costs this side a
// connection and a TLS handshake per attempt (a key exchange, a signature
// and the verification of its certificate chain). So while a peer is
// penalised, Initials from the addresses its connections came from are
// refused before any cryptography:
//
//   - its address and port, always: a NAT gives each host behind it ports
//     of its own, so no other peer sends from them;
//   - every port of its address (an IPv6 address's /64), unless a peer in
//     good standing is connected from that address or was admitted from
//     it within sharedFor: a peer that opens a new socket for each
//     attempt is refused too, and peers behind one NAT address with it
//     keep connecting (each of its attempts from a new port then still
//     costs a handshake).
//
// Only a completed handshake of the penalised identity puts an address on
// the list, so a spoofer cannot have someone else's address refused; an
// Initial with a spoofed listed address is refused, which costs its owner
// nothing it did not already lose. A peer in good standing that first
// connects from the address of a penalised peer while no other peer in
// good standing is connected from it is refused until the penalty ends
// (at most penaltyMax); docs/security.md weighs this.

// sharedFor is how long an address that served a peer in good standing
// is exempt from address-wide refusals after that peer's last connection
// from it closed.
const sharedFor = time.Hour

// sources holds the addresses penalised peers connected from and those
// every peer connects from. Its zero value is ready to use.
type sources struct {
	mu    sync.Mutex
	ports map[netip.AddrPort]time.Time      // refused until
	hosts map[netip.Prefix]time.Time        // refused until, unless shared
	until map[*peer]time.Time               // the penalty's end, for peers with addresses refused
	uses  map[netip.Prefix]map[*peer]*usage // which peers connect from each address
	sweep int                               // prune expired entries once this many are held
}

// usage is one peer's connections from one address.
type usage struct {
	live int       // open now
	last time.Time // when one was last admitted or closed
}

// addrPort returns a's address and port, IPv4 unmapped.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// host is the address-wide key of ap: the IPv4 address, or the IPv6 /64.
func host(ap netip.AddrPort) netip.Prefix {
	if ap.Addr().Is4() {
		return netip.PrefixFrom(ap.Addr(), 32)
	}
	pf, _ := ap.Addr().Prefix(64)
	return pf
}

// ban refuses Initials from a, where p connected from while penalised
// until until.
func (s *sources) ban(a net.Addr, p *peer, until, now time.Time) {
	ap, ok := addrPort(a)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.ports[ap] = later(s.ports[ap], until)
	s.hosts[host(ap)] = later(s.hosts[host(ap)], until)
	s.until[p] = later(s.until[p], until)
	s.prune(now)
}

// banned reports whether an Initial from a is refused at now: a
// penalised peer connected from its address and port, or from its address
// and no peer in good standing shares it.
func (s *sources) banned(a net.Addr, now time.Time) bool {
	ap, ok := addrPort(a)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.ports[ap]) {
		return true
	}
	h := host(ap)
	if !now.Before(s.hosts[h]) {
		return false
	}
	for p, u := range s.uses[h] {
		if !now.Before(s.until[p]) && (u.live > 0 || now.Sub(u.last) < sharedFor) {
			return false // shared with a peer in good standing
		}
	}
	return true
}

// admitted records a connection of p, in good standing, from a, open
// until ctx ends.
func (s *sources) admitted(ctx context.Context, a net.Addr, p *peer, now func() time.Time) {
	ap, ok := addrPort(a)
	if !ok {
		return
	}
	h := host(ap)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if s.uses[h] == nil {
		s.uses[h] = map[*peer]*usage{}
	}
	u := s.uses[h][p]
	if u == nil {
		u = &usage{}
		s.uses[h][p] = u
	}
	u.live++
	u.last = now()
	s.prune(u.last)
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		u.live--
		u.last = now()
	})
}

// init makes the maps. s.mu held.
func (s *sources) init() {
	if s.ports == nil {
		s.ports, s.hosts = map[netip.AddrPort]time.Time{}, map[netip.Prefix]time.Time{}
		s.until, s.uses = map[*peer]time.Time{}, map[netip.Prefix]map[*peer]*usage{}
	}
}

// prune drops expired entries once enough are held that doing so costs
// little per entry added. s.mu held.
func (s *sources) prune(now time.Time) {
	if len(s.ports)+len(s.hosts)+len(s.uses) < s.sweep {
		return
	}
	maps.DeleteFunc(s.ports, func(_ netip.AddrPort, until time.Time) bool { return !now.Before(until) })
	maps.DeleteFunc(s.hosts, func(_ netip.Prefix, until time.Time) bool { return !now.Before(until) })
	maps.DeleteFunc(s.until, func(_ *peer, until time.Time) bool { return !now.Before(until) })
	maps.DeleteFunc(s.uses, func(_ netip.Prefix, ps map[*peer]*usage) bool {
		maps.DeleteFunc(ps, func(_ *peer, u *usage) bool { return u.live == 0 && now.Sub(u.last) >= sharedFor })
		return len(ps) == 0
	})
	s.sweep = 2*(len(s.ports)+len(s.hosts)+len(s.uses)) + 64
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
