package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// The TCP transport carries peering where UDP does not get through: TLS 1.3
// over TCP, on the same port number as QUIC, with the same certificates,
// ALPN and verification (prepareTLS; VerifyConnection runs on resumption
// too), and the connection's streams multiplexed by yamux
// (github.com/libp2p/go-yamux, the multiplexer of libp2p). Above the
// session everything is shared with QUIC: the control stream and its
// hellos, catalogue and lease, stream headers and status, budgets and
// penalties.
//
// Why yamux and not HTTP/2: a peering connection carries streams both
// ways, whoever dialled it, and a stream half-closes each way on its own.
// HTTP/2 lets only the client open streams on a connection, and
// golang.org/x/net/http2's server ends a request's stream once its
// handler returns, so the server side cannot half-close while still
// reading. yamux opens streams from either side, half-closes (CloseWrite),
// resets with a code (ResetWithError), closes a session with a code, bounds
// incoming streams, auto-tunes each stream's window from the measured RTT,
// and measures the RTT itself.
//
// What TCP cannot do: one lost segment stalls every stream of the
// connection until it is retransmitted (head-of-line blocking), which is
// why QUIC is preferred and TCP is the fallback (fallback.go).

// yamux session codes: yamux gives GoAway codes 0-2 meanings of its own
// (normal, protocol error, internal error) and sends none for 0, so a
// session closes with tcpCodeBase plus the ErrorCode. Stream reset codes
// are ErrorCodes as they are.
const tcpCodeBase = 1 << 16

// tcpMaxIncomingStreams caps a TCP session's concurrent incoming streams.
// yamux has no connection-wide window: each stream may have its initial
// 256 KiB window in flight, so 128 streams bound what a peer can make a
// connection buffer to QUIC's connection window (maxConnWindow). A peer
// past it has the stream reset, which the opener sees as a failed open.
const tcpMaxIncomingStreams = maxConnWindow / (256 << 10)

// yamuxConfig is the yamux configuration of every TCP session.
func (cfg *Config) yamuxConfig() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = tcpMaxIncomingStreams
	y.MaxIncomingStreams = uint32(min(cfg.MaxIncomingStreams, tcpMaxIncomingStreams))
	y.MaxStreamWindowSize = maxStreamWindow
	// The lease notices a silent peer; yamux's keep-alive is what keeps
	// NAT state alive on an idle session, as QUIC's is.
	y.EnableKeepAlive = true
	y.KeepAliveInterval = cfg.KeepAlivePeriod
	y.ConnectionWriteTimeout = cfg.HelloTimeout
	y.LogOutput = io.Discard
	return y
}

// tcpSession is a yamux session over TLS over TCP as a session.
type tcpSession struct {
	ys     *yamux.Session
	tc     *tls.Conn
	raw    *countConn
	ctx    context.Context
	closed atomic.Pointer[error] // why this side closed it
}

// newTCPSession starts yamux on an authenticated TLS connection; the
// dialer is yamux's client.
func newTCPSession(tc *tls.Conn, raw *countConn, cfg *yamux.Config, dialer bool) (*tcpSession, error) {
	start := yamux.Server
	if dialer {
		start = yamux.Client
	}
	ys, err := start(&lingerConn{Conn: tc, raw: raw.Conn}, cfg, newTCPMemory())
	if err != nil {
		return nil, err
	}
	s := &tcpSession{ys: ys, tc: tc, raw: raw}
	ctx, cancel := context.WithCancelCause(context.Background())
	s.ctx = ctx
	go func() {
		<-ys.CloseChan()
		cancel(s.closeErr())
	}()
	return s, nil
}

// closeErr is why the session closed: this side's code, the peer's
// (yamux's GoAway), or the connection's end.
func (s *tcpSession) closeErr() error {
	if e := s.closed.Load(); e != nil {
		return *e
	}
	_, err := s.ys.OpenStream(context.Background()) // a closed session returns why
	var ce *ClosedError
	switch err = streamErr(err); {
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, yamux.ErrRemoteGoAway):
		return &ClosedError{Code: CodeOK, Remote: true}
	}
	return fmt.Errorf("tcp session lost: %w", err)
}

// ClosedError is how a TCP peering connection ended by either side's
// choice. A QUIC close carries the closer's reason text; yamux's carries
// its code only, so the text here explains the code, and the closer's log
// has the detail.
type ClosedError struct {
	Code   ErrorCode
	Remote bool
	Reason string // this side's, when it closed
}

func (e *ClosedError) Error() string {
	who := "closed the connection"
	if e.Remote {
		who = "peer closed the connection"
	}
	msg := who + ": " + e.Code.String()
	if e.Reason != "" {
		return msg + ": " + e.Reason
	}
	if hint := closeHints[e.Code]; hint != "" && e.Remote {
		return msg + " (" + hint + ")"
	}
	return msg
}

// closeHints explain the codes a peer closes a TCP connection with.
var closeHints = map[ErrorCode]string{
	CodeWrongTransport: "it does not peer over TCP: compare both sides' peering.transport",
	CodeLimit:          "this side went over the budget the peer sets; the peer's log says which",
	CodeDenied:         "the peer's policy refused this identity or hello; its log says why",
	CodeProtocol:       "the peer found a protocol error; its log says which",
	CodePenalty:        "the peer penalises this side for an earlier broken rule",
	CodeRevoked:        "this side's certificate no longer passes the peer's trust check",
	CodeCertExpired:    "this side's certificate expired on the connection",
	CodeLeaseExpired:   "the peer heard nothing from this side for its lease",
}

func (s *tcpSession) OpenStream(ctx context.Context) (pstream, error) {
	ys, err := s.ys.OpenStream(ctx)
	if err != nil {
		return nil, streamErr(err)
	}
	return tcpStream{ys}, nil
}

// AcceptStream returns the next stream; yamux's accept takes no context,
// so one that ends first closes the session (the hello's timeout, or the
// session's own end).
func (s *tcpSession) AcceptStream(ctx context.Context) (pstream, error) {
	stop := context.AfterFunc(ctx, func() { s.CloseWithError(CodeProtocol, "no stream in time") })
	ys, err := s.ys.AcceptStream()
	stop()
	if err != nil {
		return nil, streamErr(err)
	}
	return tcpStream{ys}, nil
}

func (s *tcpSession) CloseWithError(code ErrorCode, reason string) {
	if s.ys.IsClosed() {
		return // the first close's reason stands
	}
	var err error = &ClosedError{Code: code, Reason: reason}
	s.closed.CompareAndSwap(nil, &err)
	_ = s.ys.CloseWithError(tcpCodeBase + uint32(code))
}

func (s *tcpSession) Context() context.Context { return s.ctx }
func (s *tcpSession) TLS() tls.ConnectionState { return s.tc.ConnectionState() }
func (s *tcpSession) LocalAddr() net.Addr      { return s.raw.LocalAddr() }
func (s *tcpSession) RemoteAddr() net.Addr     { return s.raw.RemoteAddr() }
func (s *tcpSession) Received() uint64         { return s.raw.reads.Load() }
func (s *tcpSession) Transport() Transport     { return TransportTCP }

// RTT is yamux's measurement (a ping when the session starts and every
// MeasureRTTInterval); it keeps no deviation.
func (s *tcpSession) RTT() (time.Duration, time.Duration) { return s.ys.RTT(), 0 }

// Path is the kernel's view of the TCP path where it has one (Linux), else
// yamux's RTT.
func (s *tcpSession) Path() pathStats {
	if st, ok := tcpPath(s.raw.Conn); ok {
		return st
	}
	return pathStats{RTT: s.ys.RTT()}
}

// tcpStream is a yamux stream as a pstream.
type tcpStream struct{ ys *yamux.Stream }

// Read and Write report a deadline as os.ErrDeadlineExceeded, as
// net.Conn and quic-go do (yamux has an error of its own for it), and the
// session's close as a *ClosedError.
func (s tcpStream) Read(b []byte) (int, error) {
	n, err := s.ys.Read(b)
	return n, streamErr(err)
}

func (s tcpStream) Write(b []byte) (int, error) {
	n, err := s.ys.Write(b)
	return n, streamErr(err)
}

func streamErr(err error) error {
	var ge *yamux.GoAwayError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, yamux.ErrTimeout):
		return os.ErrDeadlineExceeded
	case errors.As(err, &ge):
		return &ClosedError{Code: sessionCode(ge.ErrorCode), Remote: ge.Remote}
	}
	return err
}

func (s tcpStream) CloseWrite() error                  { return s.ys.CloseWrite() }
func (s tcpStream) CancelRead(ErrorCode)               { _ = s.ys.CloseRead() }
func (s tcpStream) Reset(code ErrorCode)               { _ = s.ys.ResetWithError(uint32(code)) }
func (s tcpStream) SetDeadline(t time.Time) error      { return s.ys.SetDeadline(t) }
func (s tcpStream) SetReadDeadline(t time.Time) error  { return s.ys.SetReadDeadline(t) }
func (s tcpStream) SetWriteDeadline(t time.Time) error { return s.ys.SetWriteDeadline(t) }

// Control: the yamux client (the dialer) numbers its streams 1, 3, 5...
func (s tcpStream) Control() bool { return s.ys.StreamID() == 1 }

// tcpRemoteCode is the code of a yamux stream reset or session close the
// peer caused.
func tcpRemoteCode(err error) (ErrorCode, bool) {
	var se *yamux.StreamError
	if errors.As(err, &se) && se.Remote {
		return ErrorCode(se.ErrorCode), true
	}
	var ce *ClosedError
	if errors.As(err, &ce) && ce.Remote {
		return ce.Code, true
	}
	return 0, false
}

// tcpCloseCode is the code a TCP session closed with, either side's.
func tcpCloseCode(err error) (ErrorCode, bool) {
	var ce *ClosedError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	return 0, false
}

// sessionCode maps a yamux GoAway code to an ErrorCode: ewgw's codes are
// offset by tcpCodeBase; yamux's own protocol and internal errors are
// CodeProtocol and CodeInternal.
func sessionCode(c uint32) ErrorCode {
	switch {
	case c >= tcpCodeBase:
		return ErrorCode(c - tcpCodeBase)
	case c == 1:
		return CodeProtocol
	case c == 2:
		return CodeInternal
	}
	return CodeOK
}

// lingerTimeout bounds how long a closed TCP session waits for the peer
// to close its side.
const lingerTimeout = 2 * time.Second

// lingerConn is the connection yamux runs on, closed gracefully: yamux
// writes its GoAway, with the close's code, and closes the connection at
// once, and a TCP socket closed with unread data in its receive buffer
// sends a reset, which may discard that GoAway at the peer before the
// peer reads it. Close half-closes instead (TLS close_notify, then FIN),
// so everything written arrives; yamux's receive loop then reads until
// the peer closes too, or until lingerTimeout, and the socket closes.
type lingerConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *lingerConn) Close() error {
	err := c.CloseWrite()
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	time.AfterFunc(lingerTimeout, func() { c.raw.Close() })
	return err
}

// countConn counts the reads that returned bytes: the session's Received.
type countConn struct {
	net.Conn
	reads atomic.Uint64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// tcpMemory bounds how far a TCP session's stream windows grow beyond
// their initial 256 KiB, all streams together, to maxConnWindow, as QUIC's
// connection window does. Initial windows (yamux's priority 255) are
// always granted: refusing one fails the session; tcpMaxIncomingStreams
// bounds them.
type tcpMemory struct {
	mu   sync.Mutex
	used int
}

// newTCPMemory returns the per-stream span factory of one session.
func newTCPMemory() func() (yamux.MemoryManager, error) { return (&tcpMemory{}).span }

// span is one new stream's share of m.
func (m *tcpMemory) span() (yamux.MemoryManager, error) { return &tcpSpan{m: m}, nil }

// tcpSpan is one stream's share of its session's tcpMemory.
type tcpSpan struct {
	m        *tcpMemory
	reserved int
}

func (s *tcpSpan) ReserveMemory(size int, prio uint8) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if prio < 255 && s.m.used+size > maxConnWindow {
		return errors.New("session window budget reached")
	}
	s.m.used += size
	s.reserved += size
	return nil
}

func (s *tcpSpan) ReleaseMemory(size int) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	size = min(size, s.reserved)
	s.m.used -= size
	s.reserved -= size
}

func (s *tcpSpan) Done() { s.ReleaseMemory(s.reserved) }

// acceptTCP accepts peering connections on ln until it closes: handshake
// admission as on QUIC (a TCP handshake proves the source address, so
// each counts towards its source), a TLS handshake bounded by
// HandshakeTimeout, then yamux and the same serving as a QUIC connection.
func (t *Tunnel) acceptTCP(ln net.Listener, adm *admission) {
	for {
		raw, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		h := &handshake{a: adm}
		if ta, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
			h.src = ta.AddrPort().Addr().Unmap()
		}
		if reason := adm.enter(h.src); reason != "" {
			t.m.handshakesRefused.WithLabelValues(reason).Inc()
			raw.Close()
			continue
		}
		t.wg.Go(func() {
			sess, err := t.handshakeTCP(t.hard, raw, h)
			if err != nil {
				t.log.Debug("peer tcp handshake failed", "remote_addr", raw.RemoteAddr().String(), "err", err)
				return
			}
			t.serveInbound(sess)
		})
	}
}

// tcpCongestion is the congestion control of the TCP transport's sockets.
// A tunnel connection lives for days and carries bursts between idle
// spells: under CUBIC it keeps a slow-start threshold from its last loss,
// so a download after a congestion episode regrows by congestion avoidance
// for many seconds (perf/RESULTS.md, "The TCP transport"). BBR paces at
// the bandwidth it measured instead.
const tcpCongestion = "bbr"

// tuneTCP sets the congestion control name (tcpCongestion) on raw where
// the kernel allows it; elsewhere raw keeps the system's default, which
// the log says once.
func (t *Tunnel) tuneTCP(raw net.Conn, name string) {
	if err := setCongestion(raw, name); err != nil {
		t.ccRefused.Do(func() {
			t.log.Info("the TCP transport's connections keep the system's congestion control: the kernel does not let this process use "+name+
				" (load its module and add it to net.ipv4.tcp_allowed_congestion_control on the node)", "err", err)
		})
	}
}

// handshakeTCP runs the server side of TLS on raw and starts yamux.
func (t *Tunnel) handshakeTCP(ctx context.Context, raw net.Conn, h *handshake) (*tcpSession, error) {
	defer h.done()
	t.tuneTCP(raw, tcpCongestion)
	cc := &countConn{Conn: raw}
	tc := tls.Server(cc, t.serverTLS)
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	sess, err := newTCPSession(tc, cc, t.ycfg, false)
	if err != nil {
		raw.Close()
	}
	return sess, err
}

// dialTCP connects to p at addr over TCP and TLS, starts yamux and checks
// the peer is who p expects.
func (t *Tunnel) dialTCP(ctx context.Context, p *peer, addr string) (session, error) {
	fail := func(err error) (session, error) {
		return nil, fmt.Errorf("dial peer %s at %s over TCP: %w (the peer must accept TCP: its peering.transport auto or tcp, "+
			"its load balancer publishing the port on TCP)", p.cfg.Name, addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(err)
	}
	t.tuneTCP(raw, tcpCongestion)
	cc := &countConn{Conn: raw}
	tc := tls.Client(cc, t.clientTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return fail(err)
	}
	sess, err := newTCPSession(tc, cc, t.ycfg, true)
	if err != nil {
		raw.Close()
		return fail(fmt.Errorf("yamux: %w", err))
	}
	return t.checkDialled(sess, p, addr)
}
