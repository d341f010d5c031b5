package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// slot is one of a peer's ConnsPerPeer dial loops. It keeps its own UDP
// socket and quic.Transport across redials: one connection runs on one
// goroutine and one socket's receive loop is one goroutine, so spreading
// connections over sockets is what lets a peering use more than one core.
type slot struct {
	udp *net.UDPConn
	tr  *quic.Transport
	v4  bool
}

// transport returns the slot's transport for an address family, replacing
// the socket when the family changed.
func (s *slot) transport(t *Tunnel, v4 bool) (*quic.Transport, error) {
	if s.tr != nil && s.v4 == v4 {
		return s.tr, nil
	}
	s.close()
	network := "udp6"
	if v4 {
		network = "udp4" // not dual-stack: some systems cannot set DF on those (quic-go #3793)
	}
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("dial socket: %w", err)
	}
	s.udp, s.v4 = udp, v4
	s.tr = &quic.Transport{Conn: udp, StatelessResetKey: t.resetKey}
	return s.tr, nil
}

func (s *slot) close() {
	if s.tr != nil {
		s.tr.Close()
		_ = s.udp.Close() // best effort: the transport may have closed it already
		s.tr, s.udp = nil, nil
	}
}

// dialLoop keeps one connection to p up until ctx ends: dial, serve until
// the connection is lost, back off, dial again. A connection that reached
// the hello resets the backoff, so the first redial after a loss is quick.
// A connection going away (goAway: retired before the peer's certificate
// expires, or the peer's GOAWAY) is replaced at once, on the same address
// and socket, while it drains; a slot has at most one such connection, so
// a second goes only after the first closed.
func (t *Tunnel) dialLoop(ctx context.Context, p *peer, index int) {
	var s slot
	defer s.close()
	var old sync.WaitGroup // the draining connection's runConn
	defer old.Wait()
	var draining <-chan bool
	checked := false
	attempt := 0
	for i := index; ; i++ {
		if !t.sitOut(ctx, p) {
			return
		}
		addr := p.cfg.Addrs[i%len(p.cfg.Addrs)]
		qc, err := t.dial(ctx, &s, p, addr)
		if !checked && s.udp != nil {
			t.checkBuffers(s.udp, "dial")
			checked = true
		}
		var up bool
		var done <-chan bool
		if err == nil {
			up, done = t.serveDialled(qc, p, &old)
		}
		if up {
			attempt = 0
		} else if err != nil && ctx.Err() == nil {
			p.setErr(err)
			t.log.Debug("peer dial failed", "peer", p.cfg.Name, "addr", addr, "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		if done != nil {
			if draining != nil {
				select {
				case <-draining:
				case <-ctx.Done():
					return
				}
			}
			draining = done
			i-- // the same address: another family would replace the socket under it
			continue
		}
		timer := time.NewTimer(backoff(attempt, t.cfg.RedialMin, t.cfg.RedialMax, t.cfg.jitter()))
		attempt++
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// serveDialled runs a dialled connection until it closes, or until this
// side stops opening streams on it (goAway): then it returns done, which
// receives once the connection closed, and the connection drains in a
// goroutine of old. up reports whether the hellos completed.
func (t *Tunnel) serveDialled(qc *quic.Conn, p *peer, old *sync.WaitGroup) (up bool, done <-chan bool) {
	stopped := make(chan struct{})
	ended := make(chan bool, 1)
	old.Go(func() { ended <- t.runConn(qc, p, true, stopped) })
	select {
	case up := <-ended:
		return up, nil
	case <-stopped:
		return true, ended
	}
}

// backoff returns the wait before redial number attempt (from 0): an
// exponential base from lo, capped at hi, with equal jitter (the wait is in
// [base/2, base)), so peers that lost each other together do not redial in
// lockstep. r is in [0, 1).
func backoff(attempt int, lo, hi time.Duration, r float64) time.Duration {
	base := hi
	if attempt < 32 && lo<<attempt > 0 && lo<<attempt < hi {
		base = lo << attempt
	}
	return base/2 + time.Duration(r*float64(base/2))
}

// dial connects to one address of p and checks the peer is who p expects.
func (t *Tunnel) dial(ctx context.Context, s *slot, p *peer, addr string) (*quic.Conn, error) {
	ua, err := resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	tr, err := s.transport(t, ua.AddrPort().Addr().Unmap().Is4())
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, ua, t.clientTLS, t.qconf)
	if err != nil {
		if reason := classify(err); reason != "" {
			t.m.handshakeFailures.WithLabelValues(reason).Inc()
		}
		return nil, fmt.Errorf("dial peer %s at %s: %w", p.cfg.Name, addr, err)
	}
	id, err := peerID(qc.ConnectionState().TLS)
	if err == nil && !p.expect.match(id) {
		err = fmt.Errorf("peer %s at %s is %s, want %s", p.cfg.Name, addr, id, p.cfg.Expect)
	}
	if err != nil {
		t.m.handshakeFailures.WithLabelValues(reasonPeerMismatch).Inc()
		qc.CloseWithError(quic.ApplicationErrorCode(CodeDenied), "unexpected peer id")
		return nil, err
	}
	return qc, nil
}

// resolve turns host:port into a UDP address, honouring ctx.
func resolve(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port in %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolve %q: %w", host, errors.Join(lerr, errors.New("no addresses")))
		}
		ip = ips[0]
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port))), nil
}

// classify names a dial failure for the handshake failure metric; "" means
// it is not counted here (our own VerifyConnection already counted it, or
// the dial was cancelled).
func classify(err error) string {
	var te *quic.TransportError
	var hte *quic.HandshakeTimeoutError
	var ite *quic.IdleTimeoutError
	switch {
	case errors.Is(err, context.Canceled):
		return ""
	case errors.As(err, &hte), errors.As(err, &ite), errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		if te.Remote {
			return reasonTLS
		}
		return ""
	}
	return reasonOther
}

// countSetupFailure counts a failure after the QUIC handshake, before the
// connection was usable.
func (t *Tunnel) countSetupFailure(err error, reason string) {
	var ne net.Error // quic-go's handshake and idle timeouts are net.Errors
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		reason = reasonTimeout
	}
	t.m.handshakeFailures.WithLabelValues(reason).Inc()
}
