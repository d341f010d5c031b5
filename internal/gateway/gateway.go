package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ewgw/ewgw/internal/admin"
	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/discovery/mirror"
	"github.com/ewgw/ewgw/internal/lb"
	"github.com/ewgw/ewgw/internal/procs"
	"github.com/ewgw/ewgw/internal/proxy"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/status"
	"github.com/ewgw/ewgw/internal/tunnel"
)

// Options are what a gateway takes besides its config.
type Options struct {
	// Base is the config file's directory, against which relative paths
	// in the config resolve.
	Base string
	// Logger receives the gateway's logs. Default: discard.
	Logger *slog.Logger
	// Version is what the gateway tells its peers and logs. Default "dev".
	Version string
	// Procs hands this process's GOMAXPROCS to the gateway, as cfg.Procs
	// says (a GOMAXPROCS environment variable wins). It is process-wide,
	// so only "ewgw run" sets it; gateways sharing a process (tests, the
	// demo) leave it alone.
	Procs bool
	// Dial, when set, replaces the dialer towards local endpoints (the
	// lab's pod network).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// New builds a gateway from a validated config: its listeners are bound,
// its identity is loaded; Run serves.
func New(ctx context.Context, cfg *config.Config, o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	gw, err := newGateway(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	if !o.Procs {
		return gw, nil
	}
	if env := os.Getenv("GOMAXPROCS"); env != "" {
		gw.procsMode = "GOMAXPROCS=" + env + " (environment)"
	} else if cfg.Procs == "adaptive" {
		gw.procsMode = cfg.Procs
		gw.procs = procs.New(procs.Config{Runtime: procs.Go(), Logger: o.Logger, Registerer: gw.reg, QueueCounts: gw.tunnelActive()})
	}
	return gw, nil
}

// Run serves until ctx ends, then drains (see run).
func (gw *Gateway) Run(ctx context.Context) error { return gw.run(ctx) }

// Registry is the gateway's metrics registry, served on /metrics.
func (gw *Gateway) Registry() *prometheus.Registry { return gw.reg }

// tunnelActive returns the governor's QueueCounts: whether a tunnel stream
// was open at any time since the previous call. Goroutines waiting for the
// one P stall the QUIC connections every tunnel stream shares, so then the
// queue counts; local connections alone are served best by one P until
// the CPU calls for more (docs/performance.md, "The procs governor"). Only
// the governor's goroutine calls it.
func (gw *Gateway) tunnelActive() func() bool {
	var last uint64
	return func() bool {
		begun, open := gw.proxy.TunnelStreams()
		active := open > 0 || begun != last
		last = begun
		return active
	}
}

// Gateway is one running ewgw: its listeners, parts and shared state.
type Gateway struct {
	cfg      *config.Config
	version  string
	log      *slog.Logger
	reg      *prometheus.Registry
	names    route.Names
	table    atomic.Pointer[route.Table]
	draining atomic.Bool
	proxy    *proxy.Proxy
	source   source
	mirror   *mirror.Mirror  // nil unless discovery.import is set
	peering  *peering        // nil when peering is off
	procs    *procs.Governor // nil unless this process's GOMAXPROCS is ours
	// procsMode says who sets GOMAXPROCS, for the start log line:
	// "runtime" unless New hands it to the governor or finds it in the
	// environment.
	procsMode string
	ln        net.Listener // the client surface
	publicLn  net.Listener // the opt-in public passthrough, or nil
	adminLn   net.Listener

	mu      sync.Mutex      // serialises rebuilds
	local   []route.Service // the latest local snapshot
	rebuilt chan struct{}   // closed and replaced at each rebuild
}

// newGateway builds a gateway from a validated config and o, whose Logger
// is set.
func newGateway(ctx context.Context, cfg *config.Config, o Options) (*Gateway, error) {
	log := o.Logger
	gw := &Gateway{cfg: cfg, log: log, version: cmp.Or(o.Version, "dev"), reg: prometheus.NewRegistry(), procsMode: "runtime", rebuilt: make(chan struct{})}
	gw.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if gw.names, err = cfg.Names.Route(); err != nil {
		return nil, err
	}
	if im := cfg.Discovery.Import; im != nil {
		gw.names.ImportSuffix = cmp.Or(im.Suffix, mirror.DefaultSuffix)
	}
	gw.rebuild()                  // an empty table until discovery reports
	var transport proxy.Transport // nil: local-only
	var quic *quicTransport
	if cfg.Peering != nil {
		quic = &quicTransport{cluster: cfg.Cluster}
		transport = quic
	}
	gw.proxy, err = proxy.New(proxy.Config{
		Table:     gw.table.Load,
		Transport: transport,
		Dial:      o.Dial,
		Balancer: lb.New(lb.Config{
			EjectAfter:  cfg.Upstream.EjectAfter,
			EjectFor:    cfg.Upstream.EjectFor.D(),
			MaxEjectFor: cfg.Upstream.MaxEjectFor.D(),
		}),
		HelloMaxSize:      cfg.Hello.MaxSize,
		HelloTimeout:      cfg.Hello.Timeout.D(),
		ConnectTimeout:    cfg.Upstream.ConnectTimeout.D(),
		Attempts:          cfg.Upstream.Attempts,
		HalfCloseTimeout:  cfg.Upstream.HalfCloseTimeout.D(),
		MaxConns:          cfg.MaxConnections,
		MaxConnsPerSource: cfg.MaxConnectionsPerSource,
		HelloBudget:       cfg.Hello.Budget,
		DrainTimeout:      cfg.DrainTimeout.D(),
		OpenTimeout:       openTimeout(cfg.Peering),
		Logger:            log,
		Registerer:        gw.reg,
	})
	if err != nil {
		return nil, err
	}
	if err := gw.listen(); err != nil {
		return nil, err
	}
	if err := gw.newSource(cfg.Discovery); err != nil {
		gw.closeListeners()
		return nil, err
	}
	if cfg.Peering != nil {
		// The tunnel hands inbound streams to the proxy, and the proxy
		// opens streams through the tunnel: quic joins the two.
		quic.proxy = gw.proxy
		if gw.peering, err = gw.newPeering(ctx, cfg.Peering, o.Base, quic); err != nil {
			gw.closeListeners()
			return nil, err
		}
		quic.tun = gw.peering.tun
		gw.rebuild()
	}
	return gw, nil
}

// rebuild swaps in a routing table made of the latest local services and
// the exports of the peers that are up, and announces the local exports.
func (gw *Gateway) rebuild() {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	in := route.Input{
		Names:    gw.names,
		Self:     route.Self{Cluster: gw.cfg.Cluster, Region: gw.cfg.Region},
		Policy:   gw.cfg.Policy.Route(),
		Services: gw.local,
	}
	if gw.peering != nil {
		in.Peers, in.Exports = gw.peering.remote()
	}
	t := route.NewTable(in)
	gw.table.Store(t)
	if gw.peering != nil {
		gw.peering.announce(t.Exports())
	}
	if gw.mirror != nil {
		gw.mirror.Set(imports(gw.local, in.Exports))
	}
	close(gw.rebuilt)
	gw.rebuilt = make(chan struct{})
}

// waitTable waits until cond holds for the routing table.
func (gw *Gateway) WaitTable(ctx context.Context, cond func(*route.Table) bool) error {
	for {
		gw.mu.Lock()
		ch := gw.rebuilt
		gw.mu.Unlock()
		if t := gw.table.Load(); t != nil && cond(t) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (gw *Gateway) closeListeners() {
	for _, ln := range []net.Listener{gw.ln, gw.publicLn, gw.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

func (gw *Gateway) listen() error {
	var err error
	if gw.ln, err = proxy.Listen(gw.cfg.Listen, gw.cfg.Hello.Timeout.D()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if l := gw.cfg.PublicPassthrough.Listen; l != "" {
		if gw.publicLn, err = proxy.Listen(l, gw.cfg.Hello.Timeout.D()); err != nil {
			gw.closeListeners()
			return fmt.Errorf("public_passthrough listen: %w", err)
		}
	}
	if gw.cfg.Admin.Listen == "off" {
		return nil
	}
	if gw.adminLn, err = net.Listen("tcp", gw.cfg.Admin.Listen); err != nil {
		gw.closeListeners()
		return fmt.Errorf("admin listen: %w", err)
	}
	return nil
}

// ready is the /readyz check.
func (gw *Gateway) ready() error {
	if gw.draining.Load() {
		return errors.New("draining")
	}
	if !gw.source.Synced() {
		return errors.New("discovery has not synced")
	}
	return nil
}

// run serves until ctx ends. Then it reports not-ready, stops accepting and
// lets live connections drain; admin and discovery stop after the drain, so
// probes keep answering throughout.
func (gw *Gateway) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	rest, stopRest := context.WithCancel(gctx)
	// Accepting stops only after /readyz reports not-ready, never before.
	serve, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	context.AfterFunc(gctx, stopServe)
	context.AfterFunc(ctx, func() {
		gw.draining.Store(true)
		gw.log.Info("draining", "active", gw.proxy.Active(), "timeout", gw.cfg.DrainTimeout.D())
		stopServe()
	})
	adminAddr := "off"
	if gw.adminLn != nil {
		adminAddr = gw.adminLn.Addr().String()
	}
	publicAddr := "off"
	if gw.publicLn != nil {
		publicAddr = gw.publicLn.Addr().String()
	}
	gw.log.Info("gateway started", "cluster", gw.cfg.Cluster, "listen", gw.ln.Addr().String(),
		"public_passthrough", publicAddr, "admin", adminAddr, "pid", os.Getpid(), "version", gw.version, "procs", gw.procsMode)
	g.Go(func() error {
		defer stopRest()
		return gw.proxy.Serve(serve, gw.ln)
	})
	if gw.publicLn != nil {
		g.Go(func() error { return gw.proxy.ServePublic(serve, gw.publicLn) })
	}
	g.Go(func() error { return gw.source.Run(rest) })
	if gw.mirror != nil {
		g.Go(func() error { return gw.mirror.Run(rest) })
	}
	if gw.peering != nil {
		g.Go(func() error { return gw.peering.run(rest, gw) })
	}
	if gw.procs != nil {
		g.Go(func() error {
			t := time.NewTicker(gw.procs.Interval())
			defer t.Stop()
			return gw.procs.Run(rest, t.C)
		})
	}
	if gw.adminLn != nil {
		h := admin.Handler(admin.Config{Gatherer: gw.reg, Ready: gw.ready, Pprof: gw.cfg.Admin.Pprof,
			Extra: map[string]http.Handler{"GET /status": status.Handler(gw.report)}})
		g.Go(func() error { return admin.Serve(rest, gw.adminLn, h) })
	}
	err := g.Wait()
	gw.log.Info("gateway stopped", "err", err)
	return err
}

// openTimeout is the peering section's stream-open bound, or zero (the
// proxy's default) when peering is off.
func openTimeout(p *config.Peering) time.Duration {
	if p == nil {
		return 0
	}
	return p.OpenTimeout.D()
}

// Identity is the SPIFFE ID the gateway peers as, or "" without peering.
func (gw *Gateway) Identity() string {
	if gw.peering == nil {
		return ""
	}
	return gw.peering.ident.ID()
}

// Peers is the state of every configured peer, or nil without peering.
func (gw *Gateway) Peers() []tunnel.PeerStatus {
	if gw.peering == nil {
		return nil
	}
	return gw.peering.tun.Peers()
}
