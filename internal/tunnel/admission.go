package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

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
// quic-go does this through Transport.VerifySourceAddress and ConnContext;
// the fork is not patched for it.

// Reasons a handshake was refused, the "reason" label of
// ewgw_tunnel_handshakes_refused_total.
const (
	admitBusy       = "busy"        // MaxHandshakes in flight
	admitSourceBusy = "source_busy" // MaxHandshakesPerSource from a proven address
)

var errAdmission = errors.New("too many handshakes in flight")

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
