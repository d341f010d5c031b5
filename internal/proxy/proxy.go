// Package proxy is the gateway's data path: it accepts TCP connections, peeks
// the TLS ClientHello without terminating TLS, routes the server name to a
// ready endpoint and splices the untouched bytes both ways.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ewgw/ewgw/internal/lb"
	"github.com/ewgw/ewgw/internal/route"
)

// Config configures a Proxy. Zero fields take the defaults noted.
type Config struct {
	// Table returns the current routing table; required. It is called once
	// per connection, so a new table applies to new connections at once.
	Table func() *route.Table
	// Transport carries connections to peers' gateways; nil keeps the
	// proxy local-only.
	Transport Transport
	// Balancer picks local endpoints. Default: lb.New(lb.Config{}).
	Balancer *lb.Balancer
	// Dial connects to a local endpoint. Default: a net.Dialer without TCP
	// keepalive.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HelloMaxSize caps the ClientHello bytes. Default sni.DefaultMaxSize.
	HelloMaxSize int
	// HelloTimeout bounds reading the ClientHello. Default 5s.
	HelloTimeout time.Duration
	// ConnectTimeout bounds one dial. Default 3s.
	ConnectTimeout time.Duration
	// OpenTimeout bounds opening a stream to one peer, which includes the
	// peer's own dial of its endpoints. Default 10s.
	OpenTimeout time.Duration
	// Attempts is how many endpoints one connection tries. Default 3.
	Attempts int
	// HalfCloseTimeout bounds a connection after one direction ended.
	// Default 5m.
	HalfCloseTimeout time.Duration
	// MaxConns caps concurrent connections: client connections (Serve) and
	// streams peers open (HandleStream) share it. Serve stops accepting at
	// the cap; a peer's stream over it is refused (RefuseBusy).
	// Default 16384.
	MaxConns int
	// DrainTimeout is how long Serve lets live connections finish after its
	// context ends before closing them. Default 30s.
	DrainTimeout time.Duration
	// MaxConnsPerSource caps one client address's concurrent connections
	// on each listener; more are closed at once (reason source_limit).
	// Default DefaultMaxConnsPerSource.
	MaxConnsPerSource int
	// HelloBudget caps the bytes all connections still reading a
	// ClientHello may hold at once, at HelloMaxSize each. When it is spent,
	// the hellos that have waited longest are cut short (reason
	// hello_budget) to make room: it bounds the memory of a flood of
	// clients that never finish a hello, while an honest client, whose
	// hello follows its connect within a round trip, still gets through.
	// Default DefaultHelloBudget.
	HelloBudget int
	// Logger receives one line per connection. Default: discard.
	Logger *slog.Logger
	// Registerer receives the proxy's metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

// Defaults of Config; internal/config reads them.
const (
	DefaultHelloTimeout      = 5 * time.Second
	DefaultConnectTimeout    = 3 * time.Second
	DefaultOpenTimeout       = 10 * time.Second
	DefaultAttempts          = 3
	DefaultHalfCloseTimeout  = 5 * time.Minute
	DefaultMaxConns          = 16384
	DefaultDrainTimeout      = 30 * time.Second
	DefaultMaxConnsPerSource = 2048
	DefaultHelloBudget       = 64 << 20
)

func (c *Config) applyDefaults() {
	if c.Balancer == nil {
		c.Balancer = lb.New(lb.Config{})
	}
	if c.Dial == nil {
		// No TCP keepalive towards endpoints: they are local, and the
		// client side's keepalive already tears a dead pair down; it saves
		// setsockopt calls on every connection.
		c.Dial = (&net.Dialer{KeepAlive: -1}).DialContext
	}
	c.HelloTimeout = cmp.Or(c.HelloTimeout, DefaultHelloTimeout)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	c.OpenTimeout = cmp.Or(c.OpenTimeout, DefaultOpenTimeout)
	c.Attempts = cmp.Or(c.Attempts, DefaultAttempts)
	c.HalfCloseTimeout = cmp.Or(c.HalfCloseTimeout, DefaultHalfCloseTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	c.MaxConnsPerSource = cmp.Or(c.MaxConnsPerSource, DefaultMaxConnsPerSource)
	c.HelloBudget = cmp.Or(c.HelloBudget, DefaultHelloBudget)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// Proxy is the gateway's TCP data path.
type Proxy struct {
	cfg   Config
	m     *metrics
	picks atomic.Uint64 // draws for weighted policies
	// Tunnel streams begun (opened to a peer or served for one) and open.
	tunnelBegun atomic.Uint64
	tunnelOpen  atomic.Int64
	// budget holds a token per client connection and peer stream: MaxConns.
	budget chan struct{}
	// sources and hellos are the flood limits of client connections.
	sources sources
	hellos  helloBudget

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// New returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Table == nil {
		return nil, errors.New("proxy: Config.Table is required")
	}
	cfg.applyDefaults()
	p := &Proxy{cfg: cfg, m: newMetrics(cfg.Registerer), conns: map[net.Conn]struct{}{},
		budget: make(chan struct{}, cfg.MaxConns)}
	p.hellos.left = cfg.HelloBudget
	return p, nil
}

// Serve accepts connections from clients inside the cluster (the client
// surface) on ln until ctx ends, at most MaxConns at a time. Then it closes
// ln, lets live connections finish for up to DrainTimeout, closes any that
// remain, and returns once every handler has returned. It returns nil after
// a drain, or the accept error that stopped it.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	return p.serve(ctx, ln, sourceClient)
}

// ServePublic is Serve for the opt-in public passthrough: its
// unauthenticated clients reach only local services exported to every peer
// (route.Table.ResolvePublic), never a peer. It has a MaxConns cap of its
// own, so the internet cannot take the slots of the cluster's clients and
// peers.
func (p *Proxy) ServePublic(ctx context.Context, ln net.Listener) error {
	return p.serve(ctx, ln, sourcePublic)
}

func (p *Proxy) serve(ctx context.Context, ln net.Listener, source string) error {
	var wg sync.WaitGroup
	sem := p.budget
	if source == sourcePublic {
		sem = make(chan struct{}, p.cfg.MaxConns)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		sem <- struct{}{}
		var c net.Conn
		c, err = p.accept(ctx, ln)
		if err != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			// A connection accepted before the drain began runs to its end:
			// it must not inherit the cancellation that stops the accept loop.
			p.handle(context.WithoutCancel(ctx), c, source)
		})
	}
	if ctx.Err() != nil {
		err = nil
	}
	p.cfg.Logger.Info("stopped accepting", "active", p.Active())
	p.drain(&wg)
	return err
}

// accept returns the next connection, retrying temporary errors (such as
// EMFILE) with a short backoff as net/http does.
func (p *Proxy) accept(ctx context.Context, ln net.Listener) (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !isTemporary(err) {
			return nil, fmt.Errorf("accept: %w", err)
		}
		p.cfg.Logger.Warn("accept failed, retrying", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// drain waits for handlers, closing their connections after DrainTimeout.
func (p *Proxy) drain(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(p.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	p.mu.Lock()
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cfg.Logger.Warn("drain timeout, closed live connections", "count", n)
	<-done
}

// track registers c for a forced close at the end of a drain.
func (p *Proxy) track(c net.Conn) (untrack func()) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}
}

// TunnelStreams returns how many tunnel streams, either way, have begun
// since the proxy started and how many are open now.
func (p *Proxy) TunnelStreams() (begun uint64, open int64) {
	return p.tunnelBegun.Load(), p.tunnelOpen.Load()
}

// tunnelStream counts a tunnel stream that begins; end counts its end.
func (p *Proxy) tunnelStream() (end func()) {
	p.tunnelBegun.Add(1)
	p.tunnelOpen.Add(1)
	return func() { p.tunnelOpen.Add(-1) }
}

// admitPeer takes a slot of the budget for a peer's stream without
// waiting: a peer over the budget is refused at once and may try another
// cluster. ok is false when the budget is full.
func (p *Proxy) admitPeer() (release func(), ok bool) {
	select {
	case p.budget <- struct{}{}:
		return func() { <-p.budget }, true
	default:
		return nil, false
	}
}

// Active returns the number of connections being handled.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
