package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/identity"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/tunnel"
)

// peering is the gateway's link to other clusters: its SPIFFE identity, the
// QUIC tunnel, and the UDP socket it serves on.
type peering struct {
	ident *identity.Source
	tun   *tunnel.Tunnel
	udp   net.PacketConn
	tcp   net.Listener
	// verify is the handshake's check of a peer (current bundles and allow
	// policy), for re-checking live connections.
	verify func(id string, chain []*x509.Certificate) error
	// fed is set when the gateway federates bundles (federate.go).
	fed *federation
}

// newPeering loads the identity and builds the tunnel on the peering
// surface's UDP socket (peeringAddr). handler receives streams peers open.
func (gw *Gateway) newPeering(ctx context.Context, c *config.Peering, base string, handler tunnel.Handler) (*peering, error) {
	icfg := identity.Config{Logger: gw.log, Registerer: gw.reg}
	switch {
	case c.Identity.Files != nil:
		f := c.Identity.Files
		icfg.Files = &identity.FileConfig{CertChain: rel(base, f.CertChain), Key: rel(base, f.Key), Bundles: map[string]string{}}
		for td, p := range f.Bundles {
			icfg.Files.Bundles[td] = rel(base, p)
		}
	case c.Identity.CA != nil:
		icfg.CA = caConfig(c.Identity.CA, base)
	default:
		icfg.UseWorkloadAPI = true
		icfg.WorkloadAPISocket = c.Identity.WorkloadAPI.Socket
	}
	ident, err := identity.New(ctx, icfg)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	pr, err := gw.buildTunnel(c, base, ident, handler)
	if err != nil {
		ident.Close()
		return nil, err
	}
	return pr, nil
}

func (gw *Gateway) buildTunnel(c *config.Peering, base string, ident *identity.Source, handler tunnel.Handler) (*peering, error) {
	auth, err := identity.ParseAuthorizer(c.Allow.TrustDomains, c.Allow.IDs, c.Allow.IDPatterns)
	if err != nil {
		return nil, fmt.Errorf("peering.allow: %w", err)
	}
	serverTLS := ident.ServerTLSConfig(auth)
	tcfg := tunnel.Config{
		Cluster: gw.cfg.Cluster, Region: gw.cfg.Region, Zone: gw.cfg.Zone, Version: gw.version,
		Peers:                  c.Peers,
		ServerTLS:              serverTLS,
		ClientTLS:              ident.ClientTLSConfig(auth),
		Handler:                handler,
		Logger:                 gw.log,
		Registerer:             gw.reg,
		ConnsPerPeer:           c.ConnsPerPeer,
		Transport:              tunnel.Transport(c.Transport),
		FallbackDelay:          c.FallbackDelay.D(),
		KeepAlivePeriod:        c.KeepAlive.D(),
		MaxIdleTimeout:         c.IdleTimeout.D(),
		Lease:                  c.Lease.D(),
		MaxIncomingStreams:     int64(c.MaxStreamsPerConn),
		MaxConnsPerPeerIn:      c.MaxConnsPerPeerIn,
		MaxImportedServices:    c.MaxImportedServices,
		MaxImportedBytes:       c.MaxImportedBytes,
		RetryAbove:             c.RetryAbove,
		MaxHandshakes:          c.MaxHandshakes,
		MaxHandshakesPerSource: c.MaxHandshakesPerSource,
	}
	if c.StatelessResetKeyFile != "" {
		key, err := readResetKey(rel(base, c.StatelessResetKeyFile))
		if err != nil {
			return nil, err
		}
		tcfg.StatelessResetKey = key
	}
	var fed *federation
	if c.Federate {
		fed = newFederation(ident, gw.log)
		tcfg.OnBundle = fed.receive
	}
	tun, err := tunnel.New(tcfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	udp, tcp, err := gw.listenPeering(c)
	if err != nil {
		return nil, err
	}
	verify := func(_ string, chain []*x509.Certificate) error {
		return serverTLS.VerifyConnection(tls.ConnectionState{PeerCertificates: chain})
	}
	return &peering{ident: ident, tun: tun, udp: udp, tcp: tcp, verify: verify, fed: fed}, nil
}

// listenPeering binds the peering surface: UDP for QUIC, TCP for the TCP
// transport. The transport a gateway does not use is bound too where it
// can be, so a peer dialling it learns why they cannot peer
// (tunnel.CodeWrongTransport) rather than timing out.
func (gw *Gateway) listenPeering(c *config.Peering) (net.PacketConn, net.Listener, error) {
	tr := tunnel.Transport(c.Transport)
	udp, err := net.ListenPacket("udp", gw.peeringAddr(c))
	if err != nil {
		if tr == tunnel.TransportTCP {
			gw.log.Debug("peering: no UDP socket for refusing QUIC peers", "err", err)
			udp = nil
		} else {
			return nil, nil, fmt.Errorf("peering listen udp: %w", err)
		}
	}
	addr := c.TCPListen
	if addr == "" {
		host, _, _ := net.SplitHostPort(gw.peeringAddr(c))
		addr = net.JoinHostPort(host, strconv.Itoa(config.DefaultTCPListenPort))
	}
	tcp, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return udp, tcp, nil
	case tr == tunnel.TransportQUIC:
		gw.log.Debug("peering: no TCP listener for refusing TCP peers", "err", err)
		return udp, nil, nil
	}
	if udp != nil {
		udp.Close()
	}
	return nil, nil, fmt.Errorf("peering listen tcp (peering.tcp_listen; peering.transport: quic needs none): %w", err)
}

// peeringAddr is the peering surface's address: peering.listen, else
// the client surface's host and (bound) port number.
func (gw *Gateway) peeringAddr(c *config.Peering) string {
	if c.Listen != "" {
		return c.Listen
	}
	_, port, _ := net.SplitHostPort(gw.ln.Addr().String())
	host, _, _ := net.SplitHostPort(gw.cfg.Listen)
	return net.JoinHostPort(host, port)
}

// caConfig is the ca identity source's configuration. The default SPIFFE
// ID's namespace and service account come from POD_NAMESPACE and
// POD_SERVICE_ACCOUNT, which a pod sets from the downward API
// (metadata.namespace, spec.serviceAccountName).
func caConfig(c *config.IdentityCA, base string) *identity.CAConfig {
	ic := &identity.CAConfig{CertChain: rel(base, c.CertChain), Key: rel(base, c.Key), Bundles: map[string]string{},
		ID: c.ID, TTL: c.TTL.D(), Namespace: os.Getenv("POD_NAMESPACE"), ServiceAccount: os.Getenv("POD_SERVICE_ACCOUNT")}
	for td, p := range c.Bundles {
		ic.Bundles[td] = rel(base, p)
	}
	return ic
}

// readResetKey reads a stateless reset key: at least 32 bytes, of which the
// first 32 are used.
func readResetKey(path string) (*[32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stateless reset key: %w", err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("stateless reset key %s: %d bytes, want at least 32", path, len(b))
	}
	return (*[32]byte)(b[:32]), nil
}

// rel resolves a path from the config file relative to its directory.
func rel(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// rttRefresh is how often the table is rebuilt with fresh peer RTTs.
const rttRefresh = 15 * time.Second

// recheckEvery is how often live peer connections are re-verified against
// the current bundles and allow policy: the identity source signals no
// change, so a peer whose trust domain bundle was dropped is cut off
// within the bundle poll plus this. Each check is one chain verification
// per connection.
const recheckEvery = 30 * time.Second

// run serves the tunnel and keeps the identity fresh until ctx ends.
func (pr *peering) run(ctx context.Context, gw *Gateway) error {
	errc := make(chan error, 3)
	go func() { errc <- pr.tun.Serve(ctx, pr.udp, pr.tcp) }()
	go func() { errc <- pr.ident.Run(ctx) }()
	go func() {
		// Peers' RTTs drift without any change being signalled; re-sort
		// "nearest first" now and then.
		rtt := time.NewTicker(rttRefresh)
		defer rtt.Stop()
		recheck := time.NewTicker(recheckEvery)
		defer recheck.Stop()
		var announce <-chan time.Time // nil unless federating
		var changed <-chan struct{}
		if pr.fed != nil {
			pr.fed.announce(pr.tun)
			t := time.NewTicker(announceEvery)
			defer t.Stop()
			announce, changed = t.C, pr.fed.changed
		}
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-pr.tun.Changes():
				gw.rebuild()
			case <-rtt.C:
				gw.rebuild()
			case <-recheck.C:
				pr.tun.Recheck(pr.verify)
			case <-announce:
				pr.fed.announce(pr.tun)
			case <-changed:
				// A peer's new bundle may leave out a root that live
				// connections were verified with.
				pr.tun.Recheck(pr.verify)
			}
		}
	}()
	var errs []error
	for range 3 {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remote lists the peers that are up, in the order they are configured
// (the order a connection tries equally near peers in), and what they
// export.
func (pr *peering) remote() ([]model.PeerInfo, []model.Export) {
	var peers []model.PeerInfo
	var out []model.Export
	for _, p := range pr.tun.Peers() {
		if !p.Up {
			continue
		}
		peers = append(peers, p.PeerInfo)
		for _, e := range p.Exports {
			e.Peer = p.Name // a copy: the entries are the tunnel's, shared and read-only
			out = append(out, e)
		}
	}
	return peers, out
}

// announce tells peers which local services are exported, with their
// ready endpoint counts.
func (pr *peering) announce(exports []model.Export) {
	pr.tun.SetExports(exports)
}
