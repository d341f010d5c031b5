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
	mu  sync.Mutex // a losing dial or a probe may use the slot beside the slot's loop
	udp *net.UDPConn
	tr  *quic.Transport
	v4  bool
}

// transport returns the slot's transport for an address family, replacing
// the socket when the family changed.
func (s *slot) transport(t *Tunnel, v4 bool) (*quic.Transport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tr != nil && s.v4 == v4 {
		return s.tr, nil
	}
	s.closeLocked()
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

// socket is the slot's UDP socket, nil before its first QUIC dial.
func (s *slot) socket() *net.UDPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udp
}

func (s *slot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *slot) closeLocked() {
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
		ok, place := t.sitOut(ctx, p)
		if !ok {
			return
		}
		addr := p.addr(i)
		helloed, done, err := t.runSlot(ctx, &s, p, addr, &old, place)
		place.end() // a dial that failed, or runConn gave it back
		if udp := s.socket(); !checked && udp != nil {
			t.checkBuffers(udp, "dial")
			checked = true
		}
		if helloed {
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

// peerAddr is one of a peer's addresses, for each transport.
type peerAddr struct{ quic, tcp string }

func (a peerAddr) String() string { return a.quic }

// addr is p's i-th address (modulo).
func (p *peer) addr(i int) peerAddr {
	a := peerAddr{quic: p.cfg.Addrs[i%len(p.cfg.Addrs)]}
	a.tcp = a.quic
	if n := len(p.cfg.TCPAddrs); n > 0 {
		a.tcp = p.cfg.TCPAddrs[i%n]
	}
	return a
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

// dialQUIC connects to one address of p over QUIC and checks the peer is
// who p expects.
func (t *Tunnel) dialQUIC(ctx context.Context, s *slot, p *peer, addr string) (session, error) {
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
		if t.cfg.Transport == TransportQUIC {
			err = fmt.Errorf("%w (peering.transport is quic: the peer must accept QUIC, and UDP must get through)", err)
		}
		return nil, fmt.Errorf("dial peer %s at %s over QUIC: %w", p.cfg.Name, addr, err)
	}
	return t.checkDialled(quicSession{qc}, p, addr)
}

// checkDialled closes sess unless its peer's SPIFFE ID is the one p
// expects.
func (t *Tunnel) checkDialled(sess session, p *peer, addr string) (session, error) {
	id, err := peerID(sess.TLS())
	if err == nil && !p.expect.match(id) {
		err = fmt.Errorf("peer %s at %s is %s, want %s", p.cfg.Name, addr, id, p.cfg.Expect)
	}
	if err != nil {
		t.m.handshakeFailures.WithLabelValues(reasonPeerMismatch).Inc()
		sess.CloseWithError(CodeDenied, "unexpected peer id")
		return nil, err
	}
	return sess, nil
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
