package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/ewgw/ewgw/internal/pipe"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/sni"
)

// connect returns a connection to tg, trying the clusters the table's
// policy plans, first choice first: this cluster's endpoints (skipped when
// all are ejected) or a stream to a peer that exports tg. A hop that fails
// before any server byte is answered is skipped for the next, so the client
// never notices. It returns where it connected, for the log, and a release
// func the caller runs once the connection is over.
func (p *Proxy) connect(ctx context.Context, c net.Conn, tab *route.Table, tg route.Target, hello *sni.ClientHello, localOnly bool) (up pipe.Conn, where string, release func(), err error) {
	if localOnly { // the public passthrough's clients never reach a peer
		return p.connectLocal(ctx, tab.Endpoints(tg), hello)
	}
	var errs []error
	for _, hop := range tab.Plan(tg, p.nextPick()) {
		if hop.Local() {
			up, where, release, err := p.connectLocal(ctx, tab.Endpoints(tg), hello)
			if err == nil {
				return up, where, release, nil
			}
			if !errors.Is(err, errNoEndpoint) {
				errs = append(errs, err)
			}
			continue
		}
		s, end, err := p.openRemote(ctx, c, hop.Peer, tg, hello)
		if err == nil {
			return s, "peer/" + hop.Peer, end, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, "", nil, errNoEndpoint
	}
	return nil, "", nil, errors.Join(errs...)
}

// connectLocal dials one of eps and replays the peeked hello.
func (p *Proxy) connectLocal(ctx context.Context, eps []netip.AddrPort, hello *sni.ClientHello) (pipe.Conn, string, func(), error) {
	conn, ep, err := p.dialLocal(ctx, eps)
	if err != nil {
		return nil, "", nil, err
	}
	release := func() { p.cfg.Balancer.Done(ep, nil) }
	// Replay the peeked bytes; the caller then copies the raw connections,
	// so TCP→TCP keeps splice(2).
	if _, err := conn.Write(hello.Raw); err != nil {
		conn.Close()
		release()
		return nil, "", nil, fmt.Errorf("%w: replay hello: %w", errDial, err)
	}
	return asHalf(conn), ep.String(), release, nil
}

// goldenStep is 1/φ: adding it modulo 1 gives a low-discrepancy sequence.
const goldenStep = 0.6180339887498949

// nextPick returns the next draw for weighted policies, in [0,1). The
// golden-ratio (Weyl) sequence is spread evenly, so a 90/10 split holds
// within a connection or two from the first connections on, where random
// draws wander by ±3 points over a thousand.
func (p *Proxy) nextPick() float64 {
	n := p.picks.Add(1)
	_, frac := math.Modf(float64(n) * goldenStep)
	return frac
}

// openRemote opens a stream to peer, which exports tg. The stream counts
// as a tunnel stream from the attempt on; end, on success, ends the count.
func (p *Proxy) openRemote(ctx context.Context, c net.Conn, peer string, tg route.Target, hello *sni.ClientHello) (s pipe.Conn, end func(), err error) {
	if p.cfg.Transport == nil {
		return nil, nil, errNoPeer
	}
	end = p.tunnelStream()
	client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	req := Request{Target: tg, SNI: hello.ServerName, Client: client}
	octx, cancel := context.WithTimeout(ctx, p.cfg.OpenTimeout)
	s, err = p.cfg.Transport.Open(octx, peer, req, hello.Raw)
	cancel()
	if err != nil {
		end()
		p.m.remoteFailures.WithLabelValues(remoteReason(err)).Inc()
		return nil, nil, fmt.Errorf("%w: %s: %w", errPeers, peer, err)
	}
	return s, end, nil
}

var errNoPeer = errors.New("no tunnel to peers")

var errPeers = errors.New(reasonPeerFailed)

// remoteReason is a bounded label for a failed Open.
func remoteReason(err error) string {
	var re *Refusal
	switch {
	case errors.As(err, &re):
		return re.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrNoConnection):
		return "no_connection"
	}
	return "error"
}

// HandleStream serves a stream a peer opened, within the connection budget
// it shares with client connections: only to a local service
// exported to that peer, judged by what the connection authenticated (the
// configured peer its SPIFFE ID matched, and the ID), never by the stream
// header; only to a local endpoint (never onward to another peer); and it
// answers the peer before any server byte so the peer can retry elsewhere.
func (p *Proxy) HandleStream(ctx context.Context, in Inbound) {
	start := time.Now()
	h, peer := in.Request(), in.Peer()
	tg := h.Target
	log := connLog{l: p.cfg.Logger, fields: func() []slog.Attr {
		// peer and peer_id are what the connection proved; the header's
		// source cluster and client address are only what the peer claims.
		return []slog.Attr{slog.String("peer", peer.Cluster), slog.String("peer_id", peer.ID),
			slog.String("claimed_source_cluster", h.SourceCluster), slog.String("claimed_client_addr", h.Client.String()),
			slog.String("sni", h.SNI), slog.String("service", tg.Service.String()), slog.Int("port", int(tg.Port))}
	}}
	release, ok := p.admitPeer()
	if !ok {
		p.m.conns.WithLabelValues(sourcePeer, resultRejected, reasonBusy).Inc()
		log.log(slog.LevelDebug, "stream refused", slog.String("reason", reasonBusy))
		in.Refuse(RefuseBusy)
		return
	}
	defer release()
	p.m.active.Inc()
	defer p.m.active.Dec()
	defer p.tunnelStream()()
	tab := p.cfg.Table()
	if !tab.ExportedTo(tg, peer) {
		p.m.conns.WithLabelValues(sourcePeer, resultRejected, string(route.ReasonNotExported)).Inc()
		log.log(slog.LevelDebug, "stream refused", slog.String("reason", string(route.ReasonNotExported)))
		in.Refuse(RefuseNotExported)
		return
	}
	up, ep, err := p.dialLocal(ctx, tab.Endpoints(tg))
	if err != nil {
		reason := RefuseDialFailed
		if errors.Is(err, errNoEndpoint) {
			reason = RefuseNoEndpoint
		}
		p.m.conns.WithLabelValues(sourcePeer, resultFailed, reason).Inc()
		log.log(slog.LevelInfo, "stream refused", slog.String("reason", reason), errAttr(err))
		in.Refuse(reason)
		return
	}
	defer p.cfg.Balancer.Done(ep, nil)
	s, err := in.Accept()
	if err != nil {
		up.Close()
		p.m.conns.WithLabelValues(sourcePeer, resultFailed, reasonAcceptFailed).Inc()
		log.log(slog.LevelInfo, "stream accept failed", errAttr(err))
		return
	}
	p.splice(log, sourcePeer, s, asHalf(up), ep.String(), 0, start)
}
