package tunnel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Choosing a transport (Config.Transport). With TransportAuto each dial
// slot connects Happy-Eyeballs style (in the spirit of RFC 8305): it dials
// QUIC, and if no QUIC handshake has completed within FallbackDelay (or
// QUIC failed sooner), dials TCP alongside; the first session up wins and
// the other is closed. While a slot runs on TCP it probes QUIC in the
// background with jittered backoff from ProbeMin to ProbeMax; once a probe
// completes, the QUIC connection becomes the slot's and the TCP one is
// retired: it takes no new streams, both sides let the streams on it
// finish, and it closes when they are done. While a slot runs on QUIC it
// watches the connection: when nothing arrived on it for RescueAfter (the
// peer refreshes its lease every Lease/4, so a live connection is never
// that quiet), or a stream open on it heard nothing within a few RTTs
// (silent.go), it dials TCP alongside and moves new streams there, so a
// network that starts dropping UDP costs new streams about RescueAfter
// plus a TCP and TLS handshake, not a lease and a redial. Whichever
// transport carries a stream, it stays on it until it ends; pick prefers
// QUIC connections to TCP ones.

// Fallback defaults.
const (
	// DefaultProbeMin and DefaultProbeMax bound the backoff of QUIC probes
	// while a slot runs on TCP: UDP that comes back is in use again within
	// about a ProbeMax.
	DefaultProbeMin = time.Second
	DefaultProbeMax = 30 * time.Second
)

// Reasons a slot used TCP, the "reason" label of
// ewgw_tunnel_transport_fallbacks_total.
const (
	fallbackTimeout = "quic_timeout" // no QUIC handshake within FallbackDelay
	fallbackFailed  = "quic_failed"  // the QUIC dial failed first
	fallbackSilent  = "quic_silent"  // a QUIC connection went silent
)

// dialed is the outcome of one dial attempt.
type dialed struct {
	sess session
	err  error
	tr   Transport
}

// connect dials p at addr on the configured transport; with TransportAuto,
// QUIC first and TCP after FallbackDelay, the first up winning.
func (t *Tunnel) connect(ctx context.Context, s *slot, p *peer, addr peerAddr) (session, error) {
	switch t.cfg.Transport {
	case TransportQUIC:
		return t.dialQUIC(ctx, s, p, addr.quic)
	case TransportTCP:
		return t.dialTCP(ctx, p, addr.tcp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan dialed, 2)
	go func() {
		sess, err := t.dialQUIC(ctx, s, p, addr.quic)
		results <- dialed{sess, err, TransportQUIC}
	}()
	timer := time.NewTimer(t.cfg.FallbackDelay)
	defer timer.Stop()
	pending, tcpStarted := 1, false
	startTCP := func(reason string, why error) {
		tcpStarted = true
		pending++
		t.m.fallbacks.WithLabelValues(reason).Inc()
		t.log.Info("peer dial falling back to TCP", "peer", p.cfg.Name, "addr", addr.String(), "reason", why)
		go func() {
			sess, err := t.dialTCP(ctx, p, addr.tcp)
			results <- dialed{sess, err, TransportTCP}
		}()
	}
	var errs []error
	for {
		select {
		case <-timer.C:
			if !tcpStarted {
				startTCP(fallbackTimeout, fmt.Errorf("no QUIC handshake within %v; trying TCP", t.cfg.FallbackDelay))
			}
		case r := <-results:
			pending--
			if r.err == nil {
				go closeLosers(results, pending)
				return r.sess, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.tr, r.err))
			if !tcpStarted && ctx.Err() == nil {
				startTCP(fallbackFailed, fmt.Errorf("QUIC dial failed (%w); trying TCP", r.err))
				continue
			}
			if pending == 0 {
				return nil, errors.Join(errs...)
			}
		}
	}
}

// closeLosers closes the sessions of the n attempts still running after
// another won the race (their dials see the cancelled context, but one may
// complete first).
func closeLosers(results <-chan dialed, n int) {
	for range n {
		if r := <-results; r.sess != nil {
			r.sess.CloseWithError(CodeOK, "another transport connected first")
		}
	}
}

// runSlot connects once and serves the slot's connection until it closes
// or goes away, moving to another transport when TransportAuto finds a
// better one: QUIC once a probe gets through while on TCP, TCP when the
// QUIC connection goes silent. The connection it moves off is retired and
// drains in a goroutine of old. When the slot's connection goes away
// (goAway: retired before the peer certificate expires, or the peer's
// GOAWAY), runSlot returns done, which receives once it closed, so the
// dial loop replaces it while it drains. helloed reports whether a hello
// completed; err is the dial error if no connection was made.
//
// place is the slot's place on trial, if the peer is on probation (penalty.go):
// its first connection's hello holds it.
func (t *Tunnel) runSlot(ctx context.Context, s *slot, p *peer, addr peerAddr, old *sync.WaitGroup, place *trialPlace) (helloed bool, done <-chan bool, err error) {
	sess, err := t.connect(ctx, s, p, addr)
	if err != nil {
		return false, nil, err
	}
	for {
		cur, trial := sess, place
		place = nil // later connections of the slot come after a hello passed, or the slot ends
		ended := make(chan bool, 1)
		stopped := make(chan struct{})
		old.Go(func() { ended <- t.runConn(cur, p, true, stopped, trial) })
		next := make(chan session, 1)
		watch, stop := context.WithCancel(ctx)
		watched := make(chan struct{})
		if t.cfg.Transport == TransportAuto {
			t.wg.Go(func() {
				defer close(watched)
				if n := t.betterTransport(watch, s, p, addr, cur); n != nil {
					next <- n
				}
			})
		} else {
			close(watched)
		}
		select {
		case ok := <-ended:
			stop()
			<-watched
			helloed = helloed || ok
			select {
			case sess = <-next: // a replacement came up as the connection closed
			default:
				return helloed, nil, nil
			}
		case <-stopped:
			stop()
			<-watched
			select {
			case n := <-next:
				n.CloseWithError(CodeOK, "the dial loop replaces the connection")
			default:
			}
			return true, ended, nil
		case n := <-next:
			stop()
			<-watched
			t.retireSession(cur, n.Transport())
			helloed = true
			sess = n
		}
	}
}

// betterTransport watches the slot's session sess until ctx ends and
// returns a replacement: a QUIC connection while sess is TCP (probing with
// backoff), a TCP one once sess, on QUIC, went silent; nil if ctx ended
// first.
func (t *Tunnel) betterTransport(ctx context.Context, s *slot, p *peer, addr peerAddr, sess session) session {
	if sess.Transport() == TransportTCP {
		return t.probeQUIC(ctx, s, p, addr)
	}
	return t.rescueTCP(ctx, p, addr, sess)
}

// probeQUIC dials QUIC with backoff until one connects or ctx ends.
func (t *Tunnel) probeQUIC(ctx context.Context, s *slot, p *peer, addr peerAddr) session {
	for attempt := 0; ; attempt++ {
		timer := time.NewTimer(backoff(attempt, t.cfg.ProbeMin, t.cfg.ProbeMax, t.cfg.jitter()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		sess, err := t.dialQUIC(ctx, s, p, addr.quic)
		if err == nil {
			t.m.upgrades.Inc()
			t.log.Info("peer reachable over QUIC again; new streams move to it", "peer", p.cfg.Name, "addr", addr.String())
			return sess
		}
		t.log.Debug("QUIC probe failed", "peer", p.cfg.Name, "addr", addr.String(), "err", err)
	}
}

// rescueTCP waits until nothing arrived on sess for RescueAfter, or a
// stream open found it silent (silent.go), then dials TCP, retrying with
// backoff while sess stays silent; it returns the TCP session, or nil once
// ctx ends.
func (t *Tunnel) rescueTCP(ctx context.Context, p *peer, addr peerAddr, sess session) session {
	every := t.cfg.RescueAfter / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	heard, at := sess.Received(), time.Now()
	attempt := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if n := sess.Received(); n != heard {
				heard, at, attempt = n, now, 0
				continue
			}
			if now.Sub(at) < t.cfg.RescueAfter && !t.openedSilent(sess) {
				continue
			}
			t.m.fallbacks.WithLabelValues(fallbackSilent).Inc()
			t.log.Info("peer dial falling back to TCP", "peer", p.cfg.Name, "addr", addr.String(),
				"reason", fmt.Sprintf("nothing heard on the QUIC connection for %v; trying TCP", now.Sub(at).Round(time.Millisecond)))
			n, err := t.dialTCP(ctx, p, addr.tcp)
			if err == nil {
				return n
			}
			t.log.Debug("TCP rescue dial failed", "peer", p.cfg.Name, "addr", addr.String(), "err", err)
			at = now.Add(backoff(attempt, t.cfg.ProbeMin, t.cfg.ProbeMax, t.cfg.jitter()) - t.cfg.RescueAfter)
			attempt++
		}
	}
}

// retireSession retires the connection of sess, which the slot moved off
// to a connection on transport to: no new streams either way, closed once
// the streams on it are done.
func (t *Tunnel) retireSession(sess session, to Transport) {
	t.mu.Lock()
	c := t.conns[sess]
	t.mu.Unlock()
	if c == nil { // its hello has not finished: nothing runs on it
		sess.CloseWithError(CodeOK, "replaced")
		return
	}
	t.log.Info("peer conn retiring: replaced", "peer", c.peer.cfg.Name, "from", sess.Transport(), "to", to)
	t.goAway(c)
}

// openedSilent reports whether sess's connection is marked silent: an open
// on it heard nothing within a few RTTs.
func (t *Tunnel) openedSilent(sess session) bool {
	t.mu.Lock()
	c := t.conns[sess]
	t.mu.Unlock()
	return c != nil && c.silent()
}
