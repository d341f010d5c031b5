package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/quic-go/quic-go"
)

// Tunnel peers this gateway with others over QUIC and carries streams both
// ways. Create one with New, run it with Serve, and open streams with Open.
type Tunnel struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	qconf     *quic.Config
	ycfg      *yamux.Config
	serverTLS *tls.Config
	clientTLS *tls.Config
	resetKey  *quic.StatelessResetKey
	instance  uint64
	peers     map[string]*peer
	order     []*peer // config order, for matching inbound IDs
	streams   tracker
	srcs      sources // addresses of penalised peers, refused at the Initial (admission.go)
	changes   chan struct{}
	served    atomic.Bool
	wg        sync.WaitGroup // every goroutine Serve starts
	ccRefused sync.Once      // the log line that the kernel refused tcpCongestion

	// hard is cancelled when draining ends; handlers get it as their context.
	hard     context.Context
	hardStop context.CancelFunc

	mu       sync.Mutex
	self     hello             // what this side announces; Gen bumps on SetExports
	conns    map[session]*conn // every established connection; nil until the hello is done
	draining bool              // shutdown began: no new connections, GOAWAY on late hellos

	bundle atomic.Pointer[bundleAnnouncement] // the trust bundle this side announces; set under mu
}

// New validates cfg, applies defaults and returns a Tunnel ready to Serve.
func New(cfg Config) (*Tunnel, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("tunnel config: %w", err)
	}
	key, stable := cfg.resetKey()
	t := &Tunnel{
		cfg:      cfg,
		log:      cfg.Logger,
		m:        newMetrics(cfg.Registerer),
		qconf:    cfg.quicConfig(),
		ycfg:     cfg.yamuxConfig(),
		resetKey: key,
		instance: mrand.Uint64(),
		peers:    map[string]*peer{},
		changes:  make(chan struct{}, 1),
		conns:    map[session]*conn{},
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(newPathCollector(t.Peers))
	}
	t.hard, t.hardStop = context.WithCancel(context.Background())
	if !stable {
		t.log.Warn("no stateless reset key configured; peers detect a restart only after their idle timeout")
	}
	t.serverTLS = t.prepareTLS(cfg.ServerTLS, true)
	if cfg.ClientTLS != nil {
		t.clientTLS = t.prepareTLS(cfg.ClientTLS, false)
	}
	t.self = hello{Cluster: cfg.Cluster, Region: cfg.Region, Zone: cfg.Zone, Version: cfg.Version,
		Instance: t.instance, Gen: 1, LeaseMS: uint32(cfg.Lease / time.Millisecond),
		Exports: t.announceable(cfg.Exports)}
	for _, pc := range cfg.Peers {
		exp, _ := parseExpect(pc.Expect) // checked by validate
		p := &peer{cfg: pc, expect: exp}
		t.peers[pc.Name] = p
		t.order = append(t.order, p)
	}
	return t, nil
}

// Serve listens for peers on pc (QUIC) and ln (TCP), dials the configured
// peers and serves streams until ctx is cancelled; then it shuts down
// gracefully (see shutdown) and returns nil. pc should be a *net.UDPConn
// so quic-go can use GSO, ECN, batched reads and the DF bit. Either may be
// nil where Config.Transport does not use it; a connection that arrives on
// a transport Config.Transport excludes is closed with CodeWrongTransport,
// which tells the peer why they cannot peer. Serve closes both before
// returning. Serve may be called once.
func (t *Tunnel) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	if !t.served.CompareAndSwap(false, true) {
		return errors.New("tunnel: Serve called twice")
	}
	if pc != nil {
		defer pc.Close()
	}
	if ln != nil {
		defer ln.Close()
	}
	switch {
	case pc == nil && t.cfg.Transport != TransportTCP:
		return fmt.Errorf("tunnel: transport %s needs a UDP socket", t.cfg.Transport)
	case ln == nil && t.cfg.Transport == TransportTCP:
		return errors.New("tunnel: transport tcp needs a TCP listener")
	}
	defer t.hardStop()
	adm := newAdmission(t)
	var qln *quic.Listener
	if pc != nil {
		tr := &quic.Transport{Conn: pc, StatelessResetKey: t.resetKey,
			VerifySourceAddress: adm.verifySource, ConnContext: adm.connContext}
		defer tr.Close()
		var err error
		if qln, err = tr.Listen(t.serverTLS, t.qconf); err != nil {
			return fmt.Errorf("tunnel listen: %w", err)
		}
		t.checkBuffers(pc, "listen")
		t.wg.Go(func() { t.acceptLoop(ctx, qln) })
	}
	if ln != nil {
		t.wg.Go(func() { t.acceptTCP(ln, adm) })
	}
	t.log.Info("tunnel listening", "udp", addrString(pc), "tcp", listenerString(ln),
		"transport", t.cfg.Transport, "peers", len(t.order))
	for _, p := range t.order {
		for slot := range t.cfg.ConnsPerPeer {
			if len(p.cfg.Addrs) > 0 {
				t.wg.Go(func() { t.dialLoop(ctx, p, slot) })
			}
		}
	}
	<-ctx.Done()
	if qln != nil {
		qln.Close()
	}
	if ln != nil {
		ln.Close()
	}
	t.shutdown()
	t.wg.Wait()
	return nil
}

func addrString(pc net.PacketConn) string {
	if pc == nil {
		return ""
	}
	return pc.LocalAddr().String()
}

func listenerString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// acceptLoop accepts connections until the listener closes. Accept returns
// only connections whose handshake, client certificate check included, has
// completed (Listen, not ListenEarly).
func (t *Tunnel) acceptLoop(ctx context.Context, ln *quic.Listener) {
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		handshakeDone(qc)
		t.wg.Go(func() { t.serveInbound(quicSession{qc}) })
	}
}

// serveInbound maps an inbound connection to its configured peer by SPIFFE
// ID, and serves it.
func (t *Tunnel) serveInbound(sess session) {
	if t.cfg.Transport != TransportAuto && sess.Transport() != t.cfg.Transport {
		t.m.handshakeFailures.WithLabelValues(reasonWrongTransport).Inc()
		sess.CloseWithError(CodeWrongTransport, fmt.Sprintf("this gateway peers over %s only (peering.transport)", t.cfg.Transport))
		return
	}
	id, _ := peerID(sess.TLS()) // VerifyConnection insisted on one
	p := t.peerFor(id)
	if p == nil {
		t.m.handshakeFailures.WithLabelValues(reasonUnknownPeer).Inc()
		t.log.Debug("peer conn rejected", "reason", reasonUnknownPeer, "peer_id", id,
			"remote_addr", sess.RemoteAddr().String())
		sess.CloseWithError(CodeDenied, "unknown peer")
		return
	}
	refused, place := t.refusePenalised(sess, p, id)
	if refused {
		return
	}
	defer place.end() // runConn ends it with the hello; this is for the refusals below
	if !p.enter(t.cfg.MaxConnsPerPeerIn) {
		e := refusal(refuseConns, CodeLimit, "more than %d connections from %s (peering.max_conns_per_peer_in)",
			t.cfg.MaxConnsPerPeerIn, id)
		p.setErr(e)
		t.log.Debug("peer conn rejected", "peer", p.cfg.Name, "reason", e.Reason, "peer_id", id,
			"remote_addr", sess.RemoteAddr().String())
		t.refuseSession(sess, e)
		return
	}
	defer p.leave()
	t.runConn(sess, p, false, nil, place)
}

// peerFor returns the peer whose Expect names id exactly, or else the first
// whose trust domain matches, or nil.
func (t *Tunnel) peerFor(id string) *peer {
	var byDomain *peer
	for _, p := range t.order {
		switch {
		case p.expect.id != "" && p.expect.id == id:
			return p
		case p.expect.id == "" && byDomain == nil && p.expect.match(id):
			byDomain = p
		}
	}
	return byDomain
}

// SetExports replaces the exports announced to peers and sends the change
// on every live connection's control stream. Peers see them sorted by
// namespace and name, one entry per service (the last of duplicates).
// Exports equal to the current ones send nothing. Entries peers would
// refuse (checkExport) are left out, with a warning.
func (t *Tunnel) SetExports(exports []Export) {
	next := t.announceable(exports)
	t.mu.Lock()
	if exportsEqual(t.self.Exports, next) {
		t.mu.Unlock()
		return
	}
	t.self.Gen++
	t.self.Exports = next
	snap := t.selfSnapshot()
	conns := t.readyConns()
	t.mu.Unlock()
	for _, c := range conns {
		closeOnSendErr(c, c.sendUpdate(snap, t.cfg.HelloTimeout))
	}
}

// announceable normalizes exports and leaves out, with a warning, those a
// peer would refuse.
func (t *Tunnel) announceable(exports []Export) []Export {
	ok, err := announceable(normalize(exports))
	if err != nil {
		t.log.Warn("exports left out: peers would refuse them", "err", err)
	}
	return ok
}

// selfSnapshot is the catalogue this side announces now. t.mu held.
func (t *Tunnel) selfSnapshot() snapshot {
	return snapshot{Gen: t.self.Gen, Exports: t.self.Exports}
}

// readyConns lists connections whose hello is done. t.mu must be held.
func (t *Tunnel) readyConns() []*conn {
	var out []*conn
	for _, c := range t.conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// Changes returns a channel that receives a value after peers' state
// changed (up, down, exports, connections). Sends coalesce: after a receive,
// call Peers for the current state. There is one channel, for one consumer.
func (t *Tunnel) Changes() <-chan struct{} { return t.changes }

func (t *Tunnel) notify() {
	select {
	case t.changes <- struct{}{}:
	default:
	}
}

// Peers returns a snapshot of every configured peer's state, in config order.
func (t *Tunnel) Peers() []PeerStatus {
	out := make([]PeerStatus, 0, len(t.order))
	for _, p := range t.order {
		out = append(out, p.status())
	}
	return out
}

// register records an established connection, or closes it at once when
// shutdown has begun; it reports whether the connection may be used.
func (t *Tunnel) register(sess session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		sess.CloseWithError(CodeShuttingDown, "shutting down")
		return false
	}
	t.conns[sess] = nil
	return true
}

func (t *Tunnel) unregister(sess session) {
	t.mu.Lock()
	delete(t.conns, sess)
	t.mu.Unlock()
}

// shutdown drains gracefully. quic-go does not flush stream data on close
// (docs/architecture.md, "Draining"), so:
//  1. no new streams: Open fails and inbound streams are refused with
//     CodeShuttingDown (the listener is already closed);
//  2. a GOAWAY on every control stream: peers stop opening streams here,
//     and close each connection once their streams on it are done, which
//     is when they have read all this side wrote;
//  3. wait for this side's streams to finish, then for peers to close,
//     within DrainTimeout; then cancel handlers' context;
//  4. CloseWithError(CodeOK) on whatever is left.
func (t *Tunnel) shutdown() {
	drained := t.streams.close()
	t.mu.Lock()
	t.draining = true
	conns := t.readyConns()
	t.mu.Unlock()
	for _, c := range conns {
		// A peer that misses the GOAWAY learns of the shutdown from the
		// connection close after the drain.
		t.goAway(c)
	}
	timer := time.NewTimer(t.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-drained:
		t.awaitPeerClose(timer.C)
	case <-timer.C:
		t.log.Warn("tunnel drain timed out", "streams", t.streams.count())
	}
	t.hardStop()
	t.mu.Lock()
	for sess := range t.conns {
		sess.CloseWithError(CodeOK, "shutdown")
	}
	t.mu.Unlock()
}

// awaitPeerClose waits until peers closed every ready connection, or until
// deadline fires.
func (t *Tunnel) awaitPeerClose(deadline <-chan time.Time) {
	t.mu.Lock()
	conns := t.readyConns()
	t.mu.Unlock()
	for _, c := range conns {
		select {
		case <-c.sess.Context().Done():
		case <-deadline:
			t.log.Warn("tunnel drain timed out waiting for peers to close")
			return
		}
	}
}

func (t *Tunnel) isDraining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}
