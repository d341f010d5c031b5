package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one tunnelled TCP connection: a bidirectional QUIC stream after
// its header and status. It reads and writes like a net.Conn; CloseWrite
// half-closes. Every Stream must end with Close or Abort, which return the
// stream's credit to the peer (quic-go #3558) and let shutdown drain.
//
// One Read and one Write may run concurrently, as on a net.Conn.
type Stream struct {
	ps   pstream
	c    *conn
	t    *Tunnel
	peer string

	// broken is set once a Read or Write failed other than by a clean EOF;
	// Close then resets instead of sending FIN, so a failure is never passed
	// on as a complete byte stream.
	broken atomic.Bool

	mu          sync.Mutex
	wroteClosed bool // FIN sent
	finished    bool // Close, Abort or a refusal happened
}

// newStream makes ps a Stream of c, which counted it (admit).
func (t *Tunnel) newStream(c *conn, ps pstream) *Stream {
	return &Stream{ps: ps, c: c, t: t, peer: c.peer.cfg.Name}
}

// Read reads bytes the peer sent. It returns io.EOF after the peer's FIN,
// and an error carrying the code (remoteCode) if the peer reset the stream.
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.ps.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		s.broken.Store(true)
	}
	return n, err
}

// Write writes bytes to the peer.
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.ps.Write(p)
	if err != nil {
		s.broken.Store(true)
	}
	return n, err
}

// CloseWrite sends FIN: the peer reads EOF after the bytes written so far.
// Reading goes on. It must not run concurrently with Write.
func (s *Stream) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.wroteClosed {
		return nil
	}
	s.wroteClosed = true
	return s.ps.CloseWrite()
}

// Close ends the stream both ways: it sends FIN if not sent yet and stops
// reading (STOP_SENDING with CodeOK if the peer's data has not all been
// read). After a failed Read or Write it resets the stream with CodeAborted
// instead. Closing twice is harmless.
func (s *Stream) Close() error {
	if s.broken.Load() {
		s.Abort(CodeAborted)
		return nil
	}
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return nil
	}
	s.finished = true
	s.ps.CancelRead(CodeOK)
	var err error
	if !s.wroteClosed {
		err = s.ps.CloseWrite()
	}
	s.mu.Unlock()
	s.release()
	return err
}

// Abort resets both directions with code (RESET_STREAM and STOP_SENDING,
// RFC 9000 §19.4–19.5): unsent and unacknowledged data is dropped and the
// peer's reads and writes fail with code. Use it when the other end of a
// splice failed.
func (s *Stream) Abort(code ErrorCode) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.ps.Reset(code)
	s.mu.Unlock()
	s.release()
}

// refuse writes a refusal status and resets the stream with the same code.
func (s *Stream) refuse(code ErrorCode) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	refuseRaw(s.ps, code)
	s.mu.Unlock()
	s.release()
}

// refuseRaw refuses a stream: a status frame first, then resets both ways
// with the same code, so the opener learns the code whether it reads the
// status or sees the reset first (CancelWrite may discard the unacknowledged
// status).
func refuseRaw(ps pstream, code ErrorCode) {
	ps.SetWriteDeadline(time.Now().Add(time.Second))
	ps.Write(appendStatus(nil, code))
	ps.Reset(code)
}

func (s *Stream) release() {
	s.c.streams.Add(-1)
	s.t.streams.done()
	s.c.closeIfDrained()
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.ps.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.ps.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.ps.SetWriteDeadline(t) }

// LocalAddr returns the local UDP address of the carrying connection.
func (s *Stream) LocalAddr() net.Addr { return s.c.sess.LocalAddr() }

// RemoteAddr returns the peer gateway's UDP address.
func (s *Stream) RemoteAddr() net.Addr { return s.c.sess.RemoteAddr() }

// Peer returns the configured name of the peer at the other end.
func (s *Stream) Peer() string { return s.peer }

// Open opens a stream to the named peer for h, on a live connection
// chosen by pick (the least loaded of the peer's replicas and
// connections), and waits for the peer's status. An open whose connection
// proves silent (silent.go) or closes before the status moves to another
// of the peer's connections.
// If the peer refuses, Open returns a *RefusedError before any byte of the
// server's reply exists, so the caller may try another peer. An empty
// h.SourceCluster is filled with this gateway's cluster. ctx bounds the
// whole open, status included.
//
// early, when not empty, is sent right behind the header in the same write:
// the gateway passes the client's ClientHello here, so the peer can replay
// it to the server the moment its local dial succeeds, instead of half an
// RTT after the status came back. If the peer refuses, early was never
// delivered to any server and may be sent to another peer.
func (t *Tunnel) Open(ctx context.Context, peer string, h Header, early []byte) (*Stream, error) {
	start := time.Now()
	s, err := t.open(ctx, peer, h, early)
	result := CodeOK.label()
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		result = re.Code.label()
	case errors.Is(err, ErrNoConnection):
		result = "no_connection"
	case err != nil:
		result = resultError
	}
	t.m.opened.WithLabelValues(result).Inc()
	t.m.openDuration.Observe(time.Since(start).Seconds())
	return s, err
}

func (t *Tunnel) open(ctx context.Context, name string, h Header, early []byte) (*Stream, error) {
	p := t.peers[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, name)
	}
	if h.SourceCluster == "" {
		h.SourceCluster = t.cfg.Cluster
	}
	hdr, err := h.AppendBinary(make([]byte, 0, 64+len(early)))
	if err != nil {
		return nil, err
	}
	hdr = append(hdr, early...)
	if !t.streams.add() {
		return nil, ErrShuttingDown
	}
	var tried []*conn
	for {
		c := p.pick(func(c *conn) bool { return slices.Contains(tried, c) })
		if c == nil {
			t.streams.done()
			if len(tried) == 0 {
				err = fmt.Errorf("%w %s", ErrNoConnection, name)
			}
			return nil, err
		}
		var s *Stream
		if s, err = t.openOn(ctx, c, hdr); err == nil || ctx.Err() != nil {
			return s, err
		}
		reason := retryReason(c, err)
		if reason == "" {
			return nil, err
		}
		t.m.openRetries.WithLabelValues(reason).Inc()
		t.log.Debug("stream open moved to another connection", "peer", name, "reason", reason, "err", err)
		tried = append(tried, c)
		if !t.streams.add() {
			return nil, ErrShuttingDown
		}
	}
}

// Reasons an open moved to another connection, the "reason" label of
// ewgw_tunnel_stream_open_retries_total.
const (
	retryNoAnswer  = "no_answer"  // the connection was silent (silent.go)
	retryConnLost  = "conn_lost"  // the connection closed before the status
	retryGoingAway = "going_away" // the connection stopped taking streams (goAway)
)

// errGoingAway is an open on a connection that stopped taking new streams
// after pick chose it.
var errGoingAway = errors.New("connection going away")

// retryReason says why an open that failed with err on c may move to
// another connection of the peer, or "" if it may not: the peer answered,
// or this side is shutting down. A refusal with CodeShuttingDown on a
// connection going away is the peer's answer to a stream that reached it
// after it had drained (closeIfDrained), before any server saw it.
func retryReason(c *conn, err error) string {
	var re *RefusedError
	switch {
	case errors.Is(err, ErrShuttingDown):
		return ""
	case errors.Is(err, errNoAnswer):
		return retryNoAnswer
	case errors.Is(err, errGoingAway),
		errors.As(err, &re) && re.Code == CodeShuttingDown && c.draining.Load():
		return retryGoingAway
	case c.sess.Context().Err() != nil:
		return retryConnLost
	}
	return ""
}

// openOn opens a stream for hdr on c and waits for the status, giving up
// early if c is silent while the peer has other connections. The caller
// counted the stream in t.streams; a failed open releases it.
func (t *Tunnel) openOn(ctx context.Context, c *conn, hdr []byte) (*Stream, error) {
	if !c.admit(true) {
		t.streams.done()
		return nil, fmt.Errorf("open stream to %s: %w", c.peer.cfg.Name, errGoingAway)
	}
	ps, err := c.sess.OpenStream(ctx)
	if err != nil {
		t.streams.done()
		c.streams.Add(-1)
		c.closeIfDrained()
		if rc, ok := remoteCode(err); ok && rc != CodeOK { // the peer closed c with a code: as handshake reports it
			return nil, &RefusedError{Peer: c.peer.cfg.Name, Code: rc}
		}
		return nil, fmt.Errorf("open stream to %s: %w", c.peer.cfg.Name, err)
	}
	s := t.newStream(c, ps)
	w := watch(c, func() { ps.SetDeadline(time.Now()) })
	err = s.handshake(ctx, hdr)
	switch gaveUp := w.stop(); {
	case gaveUp && err == nil: // the status won the race: keep the stream
		ps.SetDeadline(time.Time{})
	case gaveUp:
		err = fmt.Errorf("open stream to %s: %w within %v", s.peer, errNoAnswer, w.every)
	}
	if err != nil {
		s.Abort(CodeAborted)
		return nil, err
	}
	return s, nil
}

// handshake writes the header, unless hdr is nil, and reads the status,
// both bounded by ctx.
func (s *Stream) handshake(ctx context.Context, hdr []byte) error {
	stop := context.AfterFunc(ctx, func() { s.ps.SetDeadline(time.Now()) })
	var err error
	if hdr != nil {
		_, err = s.ps.Write(hdr)
	}
	var code ErrorCode
	if err == nil {
		code, err = readStatus(s.ps)
	}
	if !stop() {
		// ctx ended: its deadline may or may not have hit the stream.
		return fmt.Errorf("open stream to %s: %w", s.peer, ctx.Err())
	}
	if rc, ok := remoteCode(err); ok && rc != CodeOK {
		return &RefusedError{Peer: s.peer, Code: rc}
	}
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", s.peer, err)
	}
	if code != CodeOK {
		return &RefusedError{Peer: s.peer, Code: code}
	}
	return nil
}
