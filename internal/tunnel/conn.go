package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// conn is one established peering connection whose hellos are exchanged.
type conn struct {
	qc       *quic.Conn
	peer     *peer
	id       string // the remote SPIFFE ID
	cluster  string // the remote cluster, from its hello
	instance uint64 // the remote run, from its hello
	dir      string // "in" or "out", the metric label

	ctlMu sync.Mutex // serializes writes on ctl
	ctl   *quic.Stream

	sentGen  atomic.Uint64 // generation of the exports last sent
	streams  atomic.Int64  // open streams either way, for picking
	draining atomic.Bool   // the peer sent GOAWAY
}

// send writes m on the control stream within timeout.
func (c *conn) send(m message, timeout time.Duration) error {
	b, err := appendMessage(nil, m)
	if err != nil {
		return err
	}
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	c.ctl.SetWriteDeadline(time.Now().Add(timeout))
	_, err = c.ctl.Write(b)
	return err
}

// closeIfDrained closes a connection the peer is draining once it carries
// no stream. The receiver of GOAWAY closes, not its sender: only it knows
// that it has read everything the sender wrote (quic-go cannot tell the
// sender when its stream data is acknowledged, and closing drops unsent
// data; research §12).
func (c *conn) closeIfDrained() {
	if c.draining.Load() && c.streams.Load() == 0 {
		c.qc.CloseWithError(quic.ApplicationErrorCode(CodeOK), "drained")
	}
}

// sendOrClose sends m, closing the connection if the control stream fails:
// a peer that misses an update must not keep routing on stale exports.
func (t *Tunnel) sendOrClose(c *conn, m message) {
	if err := c.send(m, t.cfg.HelloTimeout); err != nil {
		c.qc.CloseWithError(quic.ApplicationErrorCode(CodeProtocol), "control stream write failed")
	}
}

// runConn owns an authenticated connection to p until it closes: hellos,
// registration with the peer, the control reader and the stream acceptor.
// It reports whether the hellos completed.
func (t *Tunnel) runConn(qc *quic.Conn, p *peer, dialer bool) bool {
	if !t.register(qc) {
		return false
	}
	defer t.unregister(qc)
	c := &conn{qc: qc, peer: p, dir: "in"}
	if dialer {
		c.dir = "out"
	}
	c.id, _ = peerID(qc.ConnectionState().TLS)
	h, err := t.exchangeHellos(c, dialer)
	if errors.Is(err, ErrShuttingDown) {
		qc.CloseWithError(quic.ApplicationErrorCode(CodeShuttingDown), "shutting down")
		return false
	}
	if err != nil {
		t.countSetupFailure(err, reasonHello)
		p.setErr(fmt.Errorf("hello: %w", err))
		t.log.Debug("peer conn rejected", "peer", p.cfg.Name, "reason", reasonHello, "err", err)
		qc.CloseWithError(quic.ApplicationErrorCode(CodeProtocol), "hello failed")
		return false
	}
	c.cluster, c.instance = h.Cluster, h.Instance
	t.m.conns.WithLabelValues(c.dir).Inc()
	defer t.m.conns.WithLabelValues(c.dir).Dec()
	t.log.Info("peer conn up", "peer", p.cfg.Name, "peer_id", c.id, "direction", c.dir,
		"remote_addr", qc.RemoteAddr().String(), "gso", qc.ConnectionState().GSO)
	t.attach(c, h)
	var wg sync.WaitGroup
	wg.Go(func() { t.readControl(c) })
	wg.Go(func() { t.acceptStreams(c) })
	<-qc.Context().Done()
	cause := context.Cause(qc.Context())
	t.applyChange(p, p.update(func() {
		p.conns = slices.DeleteFunc(p.conns, func(x *conn) bool { return x == c })
		if !isGraceful(cause) {
			p.lastErr = cause
		}
	}))
	t.log.Info("peer conn closed", "peer", p.cfg.Name, "direction", c.dir, "err", cause)
	wg.Wait()
	return true
}

// attach makes c usable: it joins the peer's pool and the tunnel's set of
// ready connections, and gets any export update, or GOAWAY, it missed during
// the hello.
func (t *Tunnel) attach(c *conn, h hello) {
	p := c.peer
	t.applyChange(p, p.update(func() {
		p.conns = append(p.conns, c)
		p.id = c.id
		p.lastErr = nil
		p.adopt(h)
	}))
	t.mu.Lock()
	var missed []message
	if _, ok := t.conns[c.qc]; ok {
		t.conns[c.qc] = c
		if t.self.Gen != c.sentGen.Load() {
			missed = append(missed, message{kind: kindExports, hello: hello{Gen: t.self.Gen, Exports: t.self.Exports}})
		}
		if t.draining { // the hello finished after shutdown's GOAWAYs went out
			missed = append(missed, message{kind: kindGoAway})
		}
	}
	t.mu.Unlock()
	for _, m := range missed {
		t.sendOrClose(c, m)
	}
}

// isGraceful reports whether a connection close is an orderly one.
func isGraceful(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ErrorCode(ae.ErrorCode) == CodeOK
}

// exchangeHellos runs the control stream's opening: the dialer opens stream
// 0 and speaks first, the acceptor answers. Both bounded by HelloTimeout.
func (t *Tunnel) exchangeHellos(c *conn, dialer bool) (hello, error) {
	ctx, cancel := context.WithTimeout(c.qc.Context(), t.cfg.HelloTimeout)
	defer cancel()
	var err error
	if dialer {
		c.ctl, err = c.qc.OpenStreamSync(ctx)
	} else {
		c.ctl, err = c.qc.AcceptStream(ctx)
		if err == nil && c.ctl.StreamID() != 0 {
			err = fmt.Errorf("first stream is %d, not the control stream", c.ctl.StreamID())
		}
	}
	if err != nil {
		return hello{}, err
	}
	deadline, _ := ctx.Deadline()
	c.ctl.SetDeadline(deadline)
	defer c.ctl.SetDeadline(time.Time{})
	if dialer {
		if err := t.writeHello(c); err != nil {
			return hello{}, err
		}
	}
	m, err := readMessage(c.ctl)
	if err == nil && m.kind != kindHello {
		err = fmt.Errorf("%w: first control message is kind %d", ErrBadHeader, m.kind)
	}
	if err != nil {
		return hello{}, err
	}
	if !dialer {
		// Draining: do not let the dialer count this connection as up.
		if t.isDraining() {
			return hello{}, ErrShuttingDown
		}
		err = t.writeHello(c)
	}
	return m.hello, err
}

// writeHello sends this side's current hello and remembers its generation.
func (t *Tunnel) writeHello(c *conn) error {
	t.mu.Lock()
	h := t.self
	t.mu.Unlock()
	c.sentGen.Store(h.Gen)
	b, err := appendMessage(nil, message{kind: kindHello, hello: h})
	if err != nil {
		return err
	}
	_, err = c.ctl.Write(b)
	return err
}

// readControl reads control messages until the stream or connection ends.
// The control stream lives as long as the connection: its end, or a
// malformed message, closes the connection.
func (t *Tunnel) readControl(c *conn) {
	for {
		m, err := readMessage(c.ctl)
		if err != nil {
			code := CodeProtocol
			if errors.Is(err, io.EOF) {
				code = CodeOK // the peer finished the stream: it is closing
			}
			c.qc.CloseWithError(quic.ApplicationErrorCode(code), "control stream ended")
			return
		}
		p := c.peer
		switch m.kind {
		case kindExports:
			t.m.controlReceived.WithLabelValues("exports").Inc()
			// Notify only on news: whoever rebuilds routing on a change
			// announces its own exports in turn, and two gateways telling
			// each other "nothing changed" would never stop.
			var changed bool
			ch := p.update(func() { changed = p.adoptExports(c.instance, m.hello.Gen, m.hello.Exports) })
			if changed || ch.up || ch.down {
				t.applyChange(p, ch)
			}
		case kindGoAway:
			t.m.controlReceived.WithLabelValues("goaway").Inc()
			t.log.Info("peer going away", "peer", p.cfg.Name, "direction", c.dir)
			t.applyChange(p, p.update(func() { c.draining.Store(true) }))
			c.closeIfDrained()
		default: // a second hello
			c.qc.CloseWithError(quic.ApplicationErrorCode(CodeProtocol), "unexpected hello")
			return
		}
	}
}

// acceptStreams hands each stream the peer opens to handleStream, in a
// goroutine owned by Serve, until the connection closes.
func (t *Tunnel) acceptStreams(c *conn) {
	for {
		qs, err := c.qc.AcceptStream(c.qc.Context())
		if err != nil {
			return
		}
		t.wg.Go(func() { t.handleStream(c, qs) })
	}
}
