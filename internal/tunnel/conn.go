package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/tunnel/param"
)

// conn is one established peering connection whose hellos are exchanged.
type conn struct {
	sess     session
	peer     *peer
	id       string // the remote SPIFFE ID
	instance uint64 // the remote run, from its hello
	dir      string // "in" or "out", the metric label

	// peerLease is how long the peer may stay silent on the control
	// stream, from its hello.
	peerLease time.Duration

	ctlMu    sync.Mutex // serializes writes on ctl; guards sent and lastSent
	ctl      pstream
	sent     snapshot  // the catalogue last sent here: the next delta's base
	lastSent time.Time // when a message last went out, for lease refreshes
	// bundleSent is the generation of the trust bundle last sent here
	// (bundle.go); guarded by ctlMu.
	bundleSent uint64

	// view is the peer's catalogue as this connection received it: the
	// hello's, with every later update applied in order. readControl
	// writes it under peer.mu.
	view snapshot

	streams  atomic.Int64  // open streams either way, for picking
	silentAt atomic.Uint64 // see silent
	draining atomic.Bool   // no new streams: set by goAway, on retirement, shutdown or the peer's GOAWAY

	// The graceful close (closeIfDrained): each side sends two GOAWAYs,
	// "stop" and "drained". drainMu orders them with the streams admit
	// counts.
	drainMu     sync.Mutex
	stopSent    bool            // this side opens no more streams here
	drainedSent bool            // this side takes no more streams here
	goAways     int             // GOAWAYs received: 1 is the peer's stop, 2 its drained
	ctlTimeout  time.Duration   // bounds the GOAWAY writes
	stopped     chan<- struct{} // closed by goAway: the dial loop's cue to replace c; nil if accepted

	// closedFor is why this side closed the connection on policy, for the
	// close log and the peer's LastError.
	closedFor atomic.Pointer[PolicyError]
}

// closeFor closes the connection because of e, counted by reason. The
// first reason is the one kept.
func (t *Tunnel) closeFor(c *conn, e *PolicyError) {
	c.closedFor.CompareAndSwap(nil, e)
	t.refuseSession(c.sess, e)
}

// refuseSession closes sess because of e, counted by reason: a
// connection refused before it has a conn, or closeFor's.
func (t *Tunnel) refuseSession(sess session, e *PolicyError) {
	t.m.refusals.WithLabelValues(e.Reason).Inc()
	sess.CloseWithError(e.Code, e.Err.Error())
}

// send writes m on the control stream within timeout.
func (c *conn) send(m message, timeout time.Duration) error {
	b, err := appendMessage(nil, m)
	if err != nil {
		return err
	}
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	return c.write(b, timeout)
}

// write writes an encoded message within timeout. c.ctlMu held.
func (c *conn) write(b []byte, timeout time.Duration) error {
	c.ctl.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.ctl.Write(b)
	c.lastSent = time.Now()
	return err
}

// sendUpdate brings the peer's view on this connection to next, unless a
// generation as new already went out (SetExports and attach may race to
// send the same one, and neither may send an older one after a newer).
func (c *conn) sendUpdate(next snapshot, timeout time.Duration) error {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if next.Gen <= c.sent.Gen {
		return nil
	}
	next = next.visibleTo(c.audiencePeer())
	b, err := encodeUpdate(c.sent, next)
	if err != nil {
		return err
	}
	if err := c.write(b, timeout); err != nil {
		return err
	}
	c.sent = next
	return nil
}

// audiencePeer is what this connection proves about its peer, for export
// audiences: the configured peer its SPIFFE ID matched, and the ID.
func (c *conn) audiencePeer() audience.Peer {
	return audience.Peer{Cluster: c.peer.cfg.Name, ID: c.id}
}

// admit counts a new stream on c, opened by this side or by the peer
// (opened false), or reports false: this side opens no stream once it sent
// its stop, and takes none once it sent drained (closeIfDrained).
func (c *conn) admit(opened bool) bool {
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	if opened && c.stopSent || !opened && c.drainedSent {
		return false
	}
	c.streams.Add(1)
	return true
}

// goAway stops this side opening streams on c and sends its stop, the
// first of its two GOAWAYs, unless it was sent already; the peer stops
// too. A dialled connection's slot then dials its replacement (stopped).
func (t *Tunnel) goAway(c *conn) {
	c.drainMu.Lock()
	if c.stopSent {
		c.drainMu.Unlock()
		return
	}
	c.stopSent = true
	closeOnSendErr(c, c.send(message{kind: kindGoAway}, c.ctlTimeout))
	c.drainMu.Unlock()
	t.applyChange(c.peer, c.peer.update(func() { c.draining.Store(true) }))
	if c.stopped != nil {
		close(c.stopped)
	}
	c.closeIfDrained()
}

// gotGoAway takes a GOAWAY from the peer: its first (stop) stops this side
// opening streams here too, its second (drained) may close c.
func (t *Tunnel) gotGoAway(c *conn) {
	c.drainMu.Lock()
	c.goAways++
	first := c.goAways == 1
	c.drainMu.Unlock()
	if first {
		t.log.Info("peer going away", "peer", c.peer.cfg.Name, "direction", c.dir)
		t.goAway(c)
	}
	c.closeIfDrained()
}

// closeIfDrained ends a connection both sides stopped opening streams on
// (goAway), gracefully. quic-go cannot tell a sender when its stream data
// is acknowledged, and closing drops what is unacknowledged
// (docs/architecture.md, "Draining"), so neither side may close on its own
// count alone: once both sent their stop and this side carries no stream,
// it has read everything the peer wrote on every stream it had, and says
// so with its second GOAWAY, drained, after which it refuses any stream
// still arriving (CodeShuttingDown; the opener moves it to another
// connection). A side that carries no stream and has the peer's drained
// closes: then each side has read all the other wrote.
func (c *conn) closeIfDrained() {
	if !c.draining.Load() { // goAway checks again once it set draining
		return
	}
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	if !c.stopSent || c.goAways == 0 || c.streams.Load() != 0 {
		return
	}
	if !c.drainedSent {
		c.drainedSent = true
		closeOnSendErr(c, c.send(message{kind: kindGoAway}, c.ctlTimeout))
	}
	if c.goAways > 1 {
		c.sess.CloseWithError(CodeOK, "drained")
	}
}

// closeOnSendErr closes the connection if a control stream write failed: a
// peer that misses an update must not keep routing on stale exports, and
// the next delta would have the wrong base.
func closeOnSendErr(c *conn, err error) {
	if err != nil {
		c.sess.CloseWithError(CodeProtocol, "control stream write failed")
	}
}

// runConn owns an authenticated connection to p until it closes: hellos,
// registration with the peer, the control reader and the stream acceptor.
// It reports whether the hellos completed.
//
// stopped, when not nil, is closed once this side stops opening streams on
// the connection (goAway), so a dial loop can replace it while it drains.
// place, when not nil, is the connection's place on trial (penalty.go),
// given back when probation ends or the connection does.
func (t *Tunnel) runConn(sess session, p *peer, dialer bool, stopped chan<- struct{}, place *trialPlace) bool {
	if !t.register(sess) {
		return false
	}
	defer t.unregister(sess)
	c := &conn{sess: sess, peer: p, dir: "in", ctlTimeout: t.cfg.HelloTimeout, stopped: stopped}
	if dialer {
		c.dir = "out"
	}
	c.id, _ = peerID(sess.TLS())
	h, err := t.exchangeHellos(c, dialer)
	defer place.end()
	if err == nil && place != nil {
		// On trial: probation ends once the connection kept to the rules
		// for probationClean after its hello; a violation first closes it.
		clean := time.AfterFunc(probationClean, func() {
			if sess.Context().Err() == nil {
				p.pass() // before the place goes: no second trial slips in
				place.end()
			}
		})
		defer clean.Stop()
	}
	if errors.Is(err, ErrShuttingDown) {
		sess.CloseWithError(CodeShuttingDown, "shutting down")
		return false
	}
	if err != nil {
		t.helloFailed(c, err)
		return false
	}
	c.instance = h.Instance
	c.peerLease = time.Duration(h.LeaseMS) * time.Millisecond
	c.view = snapshot{Gen: h.Gen, Exports: h.Exports} // normalized by checkHello
	t.m.conns.WithLabelValues(c.dir, string(sess.Transport())).Inc()
	defer t.m.conns.WithLabelValues(c.dir, string(sess.Transport())).Dec()
	t.log.Info("peer conn up", "peer", p.cfg.Name, "peer_id", c.id, "direction", c.dir,
		"remote_addr", sess.RemoteAddr().String(), "transport", sess.Transport())
	t.attach(c, h)
	var wg sync.WaitGroup
	wg.Go(func() { t.readControl(c) })
	wg.Go(func() { t.acceptStreams(c) })
	wg.Go(func() { t.keepLease(c) })
	wg.Go(func() { t.watchExpiry(c) })
	<-sess.Context().Done()
	cause := context.Cause(sess.Context())
	if e := c.closedFor.Load(); e != nil {
		cause = e
	}
	t.applyChange(p, p.update(func() {
		p.conns = slices.DeleteFunc(p.conns, func(x *conn) bool { return x == c })
		p.refresh()
		if !isGraceful(cause) {
			p.lastErr = cause
		}
	}))
	t.log.Info("peer conn closed", "peer", p.cfg.Name, "direction", c.dir, "err", cause)
	wg.Wait()
	return true
}

// helloFailed closes a connection whose hellos failed. A peer that broke
// a rule (or a peer that says this side did) is logged at info: that is an
// operator's problem, and the peer stays down until it is fixed.
func (t *Tunnel) helloFailed(c *conn, err error) {
	p := c.peer
	t.countSetupFailure(err, reasonHello)
	var pe *PolicyError
	if errors.As(err, &pe) {
		t.log.Info("peer conn refused", "peer", p.cfg.Name, "peer_id", c.id, "reason", pe.Reason, "err", pe.Err)
		t.penalise(c, pe)
		p.setErr(fmt.Errorf("hello: %w", err))
		t.closeFor(c, pe)
		return
	}
	p.setErr(fmt.Errorf("hello: %w", err))
	level := slog.LevelDebug
	code, remote := remoteCode(err)
	if remote && (isPolicyCode(code) || code == CodeProtocol) || errors.Is(err, errControlVersion) {
		// Refused, or the two sides speak different control protocols
		// (a version skew during an upgrade): the peer stays down until
		// an operator acts.
		level = slog.LevelInfo
	}
	t.log.Log(context.Background(), level, "peer conn rejected", "peer", p.cfg.Name, "reason", reasonHello, "err", err)
	reason := "hello failed"
	if errors.Is(err, errControlVersion) {
		reason = err.Error()
	}
	c.sess.CloseWithError(CodeProtocol, reason)
}

// isPolicyCode reports whether a connection closed with code was refused
// on policy or a budget rather than failing.
func isPolicyCode(code ErrorCode) bool {
	switch code {
	case CodeDenied, CodeLimit, CodeRevoked, CodeCertExpired, CodePenalty, CodeWrongTransport:
		return true
	}
	return false
}

// attach makes c usable: it joins the peer's pool and the tunnel's set of
// ready connections, and gets any export update, or GOAWAY, it missed during
// the hello.
func (t *Tunnel) attach(c *conn, h hello) {
	p := c.peer
	t.applyChange(p, p.update(func() { p.attachConn(c, h) }))
	t.mu.Lock()
	_, live := t.conns[c.sess]
	if live {
		t.conns[c.sess] = c
	}
	self, goAway := t.selfSnapshot(), t.draining // the hello finished after shutdown's GOAWAYs went out
	t.mu.Unlock()
	if !live {
		return
	}
	err := c.sendUpdate(self, t.cfg.HelloTimeout)
	if err == nil {
		err = c.sendBundle(t.bundle.Load(), t.cfg.HelloTimeout)
	}
	closeOnSendErr(c, err)
	if err == nil && goAway {
		t.goAway(c)
	}
}

// isGraceful reports whether a connection close is an orderly one.
func isGraceful(err error) bool {
	code, ok := closeCode(err)
	return ok && code == CodeOK
}

// exchangeHellos runs the control stream's opening: the dialer opens stream
// 0 and speaks first, the acceptor answers. Both bounded by HelloTimeout.
func (t *Tunnel) exchangeHellos(c *conn, dialer bool) (hello, error) {
	ctx, cancel := context.WithTimeout(c.sess.Context(), t.cfg.HelloTimeout)
	defer cancel()
	var err error
	if dialer {
		c.ctl, err = c.sess.OpenStream(ctx)
	} else {
		c.ctl, err = c.sess.AcceptStream(ctx)
		if err == nil && !c.ctl.Control() {
			err = errors.New("the first stream is not the control stream")
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
	t.m.controlReceived.WithLabelValues(kindNames[kindHello]).Inc()
	if m, err = t.readParts(c.ctl, m, 0); err != nil {
		return hello{}, err
	}
	if lease := time.Duration(m.hello.LeaseMS) * time.Millisecond; lease < param.MinLease {
		return hello{}, fmt.Errorf("peer lease %v below %v", lease, param.MinLease)
	}
	if err := t.checkHello(c, &m.hello); err != nil {
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

// checkHello checks the claims of a peer's hello against what this side
// knows: the cluster must be the one the peer entry names, and the
// catalogue within budget. It normalizes the catalogue.
func (t *Tunnel) checkHello(c *conn, h *hello) error {
	if h.Cluster != c.peer.cfg.Name {
		return refusal(refuseClusterMismatch, CodeDenied, "hello names cluster %q, but identity %s is peer %q",
			trim(h.Cluster), c.id, c.peer.cfg.Name)
	}
	h.Exports = sortUnique(h.Exports) // decoded here: ours to sort
	if pe := t.cfg.checkBudget(h.Exports); pe != nil {
		return pe
	}
	return nil
}

// writeHello sends this side's current hello and remembers its catalogue
// as the base of the connection's first delta.
func (t *Tunnel) writeHello(c *conn) error {
	t.mu.Lock()
	h := t.self
	t.mu.Unlock()
	h.Exports = snapshot{Gen: h.Gen, Exports: h.Exports}.visibleTo(c.audiencePeer()).Exports
	b, err := appendSnapshot(nil, kindHello, h)
	if err != nil {
		return err
	}
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	c.sent = snapshot{Gen: h.Gen, Exports: h.Exports}
	_, err = c.ctl.Write(b) // under the hello's deadline
	c.lastSent = time.Now()
	return err
}

// readControl reads control messages until the stream or connection ends.
// The control stream lives as long as the connection: its end, a malformed
// message, an update that does not apply or the peer's silence for its
// lease closes the connection.
func (t *Tunnel) readControl(c *conn) {
	r := leaseReader{c: c, lease: c.peerLease}
	for {
		m, err := readMessage(r)
		if err != nil {
			t.controlEnded(c, err)
			return
		}
		t.m.controlReceived.WithLabelValues(kindNames[m.kind]).Inc()
		switch m.kind {
		case kindExports, kindDelta:
			if m, err = t.readParts(r, m, len(c.view.Exports)); err == nil {
				err = t.applyUpdate(c, m)
			}
		case kindLease: // reading it renewed the lease
		case kindBundle:
			err = t.receiveBundle(c, m.bundle)
		case kindGoAway:
			t.gotGoAway(c)
		default:
			err = errors.New("unexpected hello")
		}
		var pe *PolicyError
		var re partReadError
		switch {
		case errors.As(err, &re):
			t.controlEnded(c, re.err)
			return
		case errors.As(err, &pe):
			t.violated(c, pe)
			return
		case err != nil:
			t.violated(c, refusal(refuseProtocol, CodeProtocol, "%w", err))
			return
		}
	}
}

// controlEnded closes the connection after the control stream failed,
// with a code that says why.
func (t *Tunnel) controlEnded(c *conn, err error) {
	var pe *PolicyError
	switch {
	case errors.As(err, &pe): // a malformed entry
		t.violated(c, pe)
	case errors.Is(err, ErrBadHeader): // a malformed message
		t.violated(c, refusal(refuseProtocol, CodeProtocol, "%w", err))
	case errors.Is(err, io.EOF): // the peer finished the stream: it is closing
		c.sess.CloseWithError(CodeOK, "control stream ended")
	case errors.Is(err, os.ErrDeadlineExceeded): // only leaseReader sets a read deadline
		t.expireLease(c)
	default:
		c.sess.CloseWithError(CodeProtocol, "control stream ended")
	}
}

// applyUpdate applies a snapshot or delta, all its parts collected, to the
// connection's view and the view to the peer's catalogue. It notifies only on news: whoever rebuilds
// routing on a change announces its own exports in turn, and two gateways
// telling each other "nothing changed" would never stop.
func (t *Tunnel) applyUpdate(c *conn, m message) error {
	var next snapshot
	var err error
	if m.kind == kindDelta {
		next, err = c.view.apply(m.delta)
	} else {
		next, err = c.view.replace(snapshot{Gen: m.hello.Gen, Exports: m.hello.Exports})
	}
	if err != nil {
		return err
	}
	if pe := t.cfg.checkBudget(next.Exports); pe != nil {
		return pe
	}
	p := c.peer
	var changed bool
	ch := p.update(func() {
		c.view = p.share(c, next)
		changed = p.refresh()
	})
	if changed || ch.up || ch.down {
		t.applyChange(p, ch)
	}
	return nil
}

// acceptStreams hands each stream the peer opens to handleStream, in a
// goroutine owned by Serve, until the connection closes.
func (t *Tunnel) acceptStreams(c *conn) {
	for {
		ps, err := c.sess.AcceptStream(c.sess.Context())
		if err != nil {
			return
		}
		t.wg.Go(func() { t.handleStream(c, ps) })
	}
}
