package tunnel

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/ewgw/ewgw/internal/audience"
)

// Handler handles streams opened by peers. The proxy implements it: it
// checks that the peer may reach the exported service in the header, dials
// a local endpoint, and only then calls Accept (or Refuse), so the opener
// hears of a failure before any server byte. Streams from peers must only
// be routed to local endpoints, never onward to another peer.
//
// HandleStream runs in its own goroutine, owned by the Tunnel, for the
// stream's whole life. When it returns, an accepted stream is closed and an
// unanswered one is refused with CodeInternal. ctx is cancelled when a
// graceful shutdown's drain time is up.
type Handler interface {
	HandleStream(ctx context.Context, in *Inbound)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, in *Inbound)

// HandleStream calls f.
func (f HandlerFunc) HandleStream(ctx context.Context, in *Inbound) { f(ctx, in) }

// Inbound is a stream a peer opened, with its decoded header, waiting for
// Accept or Refuse.
type Inbound struct {
	// Header is the stream header, already checked for version and lengths.
	Header Header
	// Peer is who opened the stream, as its connection proved it: the
	// configured peer (its cluster) its SPIFFE ID matched, and the ID.
	Peer audience.Peer
	// Addr is the peer gateway's UDP address.
	Addr net.Addr

	s        *Stream
	mu       sync.Mutex
	answered bool
	accepted bool
}

// errAnswered is returned by Accept and Refuse after either was called.
var errAnswered = errors.New("inbound stream already answered")

// Accept sends the OK status and returns the stream for splicing.
func (in *Inbound) Accept() (*Stream, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.answered {
		return nil, errAnswered
	}
	in.answered, in.accepted = true, true
	_, err := in.s.Write(appendStatus(nil, CodeOK))
	in.s.t.m.accepted.WithLabelValues(CodeOK.label()).Inc()
	if err != nil {
		in.s.Abort(CodeAborted)
		return nil, err
	}
	return in.s, nil
}

// Refuse sends the refusal status with code, then resets the stream with it.
// CodeOK is not a refusal and is sent as CodeInternal.
func (in *Inbound) Refuse(code ErrorCode) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.answered {
		return errAnswered
	}
	in.answered = true
	if code == CodeOK {
		code = CodeInternal
	}
	in.s.t.m.accepted.WithLabelValues(code.label()).Inc()
	in.s.refuse(code)
	return nil
}

// finish runs after the handler returned.
func (in *Inbound) finish() {
	in.mu.Lock()
	answered, accepted := in.answered, in.accepted
	in.mu.Unlock()
	switch {
	case !answered:
		in.Refuse(CodeInternal)
	case accepted:
		in.s.Close()
	}
}

// handleStream reads an inbound stream's header under HeaderTimeout and
// passes it to the handler; bad headers and streams arriving during
// shutdown are refused here.
func (t *Tunnel) handleStream(c *conn, ps pstream) {
	if !t.streams.add() {
		t.m.accepted.WithLabelValues(CodeShuttingDown.label()).Inc()
		refuseRaw(ps, CodeShuttingDown)
		return
	}
	if !c.admit(false) { // it reached this side after it drained
		t.streams.done()
		t.m.accepted.WithLabelValues(CodeShuttingDown.label()).Inc()
		refuseRaw(ps, CodeShuttingDown)
		return
	}
	s := t.newStream(c, ps)
	ps.SetReadDeadline(time.Now().Add(t.cfg.HeaderTimeout))
	h, err := readHeader(ps)
	if err != nil {
		code := codeOf(err)
		t.m.accepted.WithLabelValues(code.label()).Inc()
		t.log.Debug("stream refused", "peer", c.peer.cfg.Name, "reason", code.String(), "err", err)
		s.refuse(code)
		return
	}
	ps.SetReadDeadline(time.Time{})
	in := &Inbound{Header: h, s: s, Peer: c.audiencePeer(), Addr: c.sess.RemoteAddr()}
	defer in.finish()
	t.cfg.Handler.HandleStream(t.hard, in)
}

// tracker counts open streams, both ways, so shutdown can wait for them.
type tracker struct {
	mu      sync.Mutex
	n       int
	closing bool
	zero    chan struct{}
}

// add counts a new stream, or reports false once closing.
func (tr *tracker) add() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.closing {
		return false
	}
	tr.n++
	return true
}

func (tr *tracker) done() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.n--
	if tr.closing && tr.n == 0 {
		close(tr.zero)
	}
}

func (tr *tracker) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.n
}

// close refuses further adds and returns a channel closed once no stream is
// open.
func (tr *tracker) close() <-chan struct{} {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.closing {
		tr.closing = true
		tr.zero = make(chan struct{})
		if tr.n == 0 {
			close(tr.zero)
		}
	}
	return tr.zero
}
