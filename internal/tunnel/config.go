package tunnel

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"time"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/tunnel/param"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// ALPN is the application protocol both sides of a peering connection
// negotiate (RFC 7301). It is set on copies of the caller's TLS configs.
const ALPN = "ewgw/1"

// Flow-control windows, sized for a WAN path. The bandwidth-delay product of
// 1 Gbit/s × 100 ms is 12.5 MB: one stream may have that much in flight, so
// a stream's window may grow to 16 MiB. The connection window must exceed
// the BDP plus the windows of streams whose local reader stalls (a slow
// backend), or a few stalled streams block every other stream on the
// connection (quic-go #3294); 32 MiB covers the BDP plus one full stalled
// stream, and with param.DefaultConnsPerPeer connections to each peer, streams
// (each put on the connection carrying the fewest) spread over eight such
// windows. Windows start smaller and auto-tune upward as the application
// reads, so idle connections cost little. Worst case memory per connection
// is the connection window; with ConnsPerPeer connections to each of P peers
// it is P × ConnsPerPeer × 32 MiB, in both directions of the pairing.
const (
	initialStreamWindow = 1 << 20
	maxStreamWindow     = 16 << 20
	initialConnWindow   = 4 << 20
	maxConnWindow       = 32 << 20
)

// Defaults applied by New to zero Config fields; those of the settings the
// configuration file exposes are in internal/tunnel/param.
const (
	DefaultHandshakeTimeout = 5 * time.Second        // Config.HandshakeTimeout
	DefaultHelloTimeout     = 10 * time.Second       // Config.HelloTimeout
	DefaultHeaderTimeout    = 10 * time.Second       // Config.HeaderTimeout
	DefaultDrainTimeout     = 15 * time.Second       // Config.DrainTimeout
	DefaultRedialMin        = 100 * time.Millisecond // Config.RedialMin
	DefaultRedialMax        = 30 * time.Second       // Config.RedialMax
)

// maxLease is the longest lease the hello's u32 milliseconds can carry.
const maxLease = math.MaxUint32 * time.Millisecond

// Peer is a gateway this one peers with, as configured: the configuration
// file's peer entries, one definition for both. Name is used in Open, logs
// and PeerStatus; a hello naming another cluster than Name closes the
// connection (CodeDenied).
type Peer = model.Peer

// Config configures a Tunnel. Zero fields get the defaults noted.
type Config struct {
	// Cluster, Region and Zone describe this gateway to peers.
	Cluster, Region, Zone string
	// Version is this gateway's software version, sent in the hello.
	Version string
	// Exports are the services announced to peers; SetExports updates them.
	Exports []Export
	// Peers are the gateways to peer with. Names must be unique.
	Peers []Peer

	// ServerTLS authenticates inbound connections. It must require a client
	// certificate and verify it (VerifyConnection runs on resumption too).
	// ALPN and TLS 1.3 are set on a copy. Required.
	ServerTLS *tls.Config
	// ClientTLS authenticates dialled connections. Required when any peer
	// has Addrs.
	ClientTLS *tls.Config

	// OnBundle receives each trust bundle a peer announces for its own
	// trust domain (bundle.go); an error refuses it and closes the
	// connection with CodeDenied. It runs on the connection's control
	// reader: it must not block. Nil ignores announced bundles.
	OnBundle func(BundleFrom, Bundle) error

	// Handler receives streams opened by peers. Nil refuses every stream
	// with CodeDenied.
	Handler Handler
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer

	// StatelessResetKey lets a restarted gateway reset its peers'
	// connections at their next packet (RFC 9000 §10.3) instead of leaving
	// them to the idle timeout. Keep it secret and stable across restarts
	// (derive it from a mounted secret). Nil generates a random key, which
	// only helps within one run.
	StatelessResetKey *[32]byte

	// Transport is what this side dials peers over and accepts from them
	// (default TransportAuto: QUIC, falling back to TCP; fallback.go).
	Transport Transport
	// FallbackDelay is how long a TransportAuto dial waits for the QUIC
	// handshake before dialling TCP alongside (default
	// param.DefaultFallbackDelay).
	FallbackDelay time.Duration
	// ProbeMin and ProbeMax bound the backoff of QUIC probes while a slot
	// runs on TCP (defaults DefaultProbeMin and DefaultProbeMax).
	ProbeMin, ProbeMax time.Duration
	// RescueAfter is how long a TransportAuto QUIC connection may hear
	// nothing before its slot dials TCP alongside (default Lease/2: the
	// peer refreshes its lease every Lease/4).
	RescueAfter time.Duration

	// ConnsPerPeer is the number of connections this side dials to each
	// peer, each from its own UDP socket, so one connection's goroutine or
	// one socket is not the ceiling (default param.DefaultConnsPerPeer).
	ConnsPerPeer int
	// KeepAlivePeriod keeps NAT and conntrack state alive (default 10s).
	KeepAlivePeriod time.Duration
	// MaxIdleTimeout closes a connection that heard nothing (default 30s).
	MaxIdleTimeout time.Duration
	// HandshakeTimeout bounds the QUIC handshake (default 5s).
	HandshakeTimeout time.Duration
	// HelloTimeout bounds the control hello exchange (default 10s).
	HelloTimeout time.Duration
	// HeaderTimeout bounds reading an inbound stream's header (default 10s).
	HeaderTimeout time.Duration
	// DrainTimeout bounds graceful shutdown (default 15s).
	DrainTimeout time.Duration
	// RedialMin and RedialMax bound the jittered exponential redial backoff
	// (defaults 100ms and 30s).
	RedialMin, RedialMax time.Duration
	// MaxIncomingStreams caps concurrent streams a peer may open on one
	// connection (default param.DefaultMaxIncomingStreams); QUIC flow control
	// enforces it (RFC 9000 §4.6), so a peer past it waits, it is not
	// refused.
	MaxIncomingStreams int64
	// MaxConnsPerPeerIn caps the connections one configured peer may have
	// dialled to this side at once, handshakes done and hellos pending
	// included; the next one is closed with CodeLimit (default twice
	// ConnsPerPeer: the peer's dial slots, plus as many again for a
	// restarted peer's connections that linger until they time out).
	MaxConnsPerPeerIn int
	// MaxImportedServices caps the services in the catalogue a peer
	// announces on one connection; a hello or update that would go over it
	// closes the connection with CodeLimit (default
	// param.DefaultMaxImportedServices).
	MaxImportedServices int
	// MaxImportedBytes caps the same catalogue's size, names and ports as
	// encoded (default param.DefaultMaxImportedBytes).
	MaxImportedBytes int
	// RetryAbove is the number of inbound handshakes in flight from which
	// a new one must first prove its address with a Retry (default
	// param.DefaultRetryAbove; negative: always). See admission.go.
	RetryAbove int
	// MaxHandshakes caps inbound handshakes in flight; more are refused
	// (default param.DefaultMaxHandshakes).
	MaxHandshakes int
	// MaxHandshakesPerSource caps inbound handshakes in flight from one
	// proven source address (default param.DefaultMaxHandshakesPerSource).
	MaxHandshakesPerSource int
	// Lease is how long a peer keeps this side's catalogue after hearing
	// nothing from it on a connection; then it closes the connection with
	// CodeLeaseExpired. It is announced in the hello, and this side sends
	// a refresh whenever it has been quiet for Lease/4. It bounds how long
	// a peer routes to this gateway after the path to it goes silent,
	// where MaxIdleTimeout would take far longer (default 2s, at least
	// param.MinLease).
	Lease time.Duration

	// jitter returns a number in [0, 1); tests replace it.
	jitter func() float64
	// now is the clock of penalties; tests replace it.
	now func() time.Time
}

// withDefaults returns cfg with every zero field defaulted.
func (cfg Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.KeepAlivePeriod, param.DefaultKeepAlivePeriod)
	def(&cfg.MaxIdleTimeout, param.DefaultMaxIdleTimeout)
	def(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&cfg.HelloTimeout, DefaultHelloTimeout)
	def(&cfg.HeaderTimeout, DefaultHeaderTimeout)
	def(&cfg.DrainTimeout, DefaultDrainTimeout)
	def(&cfg.RedialMin, DefaultRedialMin)
	def(&cfg.RedialMax, DefaultRedialMax)
	if cfg.Lease == 0 { // a negative lease is an error, not a default
		cfg.Lease = param.DefaultLease
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportAuto
	}
	def(&cfg.FallbackDelay, param.DefaultFallbackDelay)
	def(&cfg.ProbeMin, DefaultProbeMin)
	def(&cfg.ProbeMax, DefaultProbeMax)
	def(&cfg.RescueAfter, cfg.Lease/2)
	if cfg.ConnsPerPeer <= 0 {
		cfg.ConnsPerPeer = param.DefaultConnsPerPeer
	}
	if cfg.MaxIncomingStreams <= 0 {
		cfg.MaxIncomingStreams = param.DefaultMaxIncomingStreams
	}
	if cfg.MaxConnsPerPeerIn <= 0 {
		cfg.MaxConnsPerPeerIn = 2 * cfg.ConnsPerPeer
	}
	if cfg.MaxImportedServices <= 0 {
		cfg.MaxImportedServices = param.DefaultMaxImportedServices
	}
	if cfg.MaxImportedBytes <= 0 {
		cfg.MaxImportedBytes = param.DefaultMaxImportedBytes
	}
	switch {
	case cfg.RetryAbove == 0:
		cfg.RetryAbove = param.DefaultRetryAbove
	case cfg.RetryAbove < 0:
		cfg.RetryAbove = 0
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = param.DefaultMaxHandshakes
	}
	if cfg.MaxHandshakesPerSource <= 0 {
		cfg.MaxHandshakesPerSource = param.DefaultMaxHandshakesPerSource
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Handler == nil {
		cfg.Handler = HandlerFunc(func(_ context.Context, in *Inbound) { in.Refuse(CodeDenied) })
	}
	if cfg.jitter == nil {
		cfg.jitter = mrand.Float64
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return cfg
}

// validate reports every problem with cfg at once.
func (cfg *Config) validate() error {
	var errs []error
	if cfg.ServerTLS == nil {
		errs = append(errs, errors.New("ServerTLS is required"))
	} else if cfg.ServerTLS.ClientAuth < tls.RequireAnyClientCert {
		errs = append(errs, errors.New("ServerTLS must require a client certificate"))
	}
	seen := map[string]bool{}
	for i, p := range cfg.Peers {
		if p.Name == "" || seen[p.Name] {
			errs = append(errs, fmt.Errorf("peer %d: empty or duplicate name %q", i, p.Name))
		}
		seen[p.Name] = true
		if _, err := parseExpect(p.Expect); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Name, err))
		}
		if len(p.Addrs) > 0 && cfg.ClientTLS == nil {
			errs = append(errs, fmt.Errorf("peer %s: has addresses but ClientTLS is nil", p.Name))
		}
	}
	switch cfg.Transport {
	case TransportAuto, TransportQUIC, TransportTCP:
	default:
		errs = append(errs, fmt.Errorf("transport %q is not auto, quic or tcp", cfg.Transport))
	}
	if cfg.ProbeMax < cfg.ProbeMin {
		errs = append(errs, errors.New("ProbeMax is below ProbeMin"))
	}
	if cfg.RedialMax < cfg.RedialMin {
		errs = append(errs, errors.New("RedialMax is below RedialMin"))
	}
	if cfg.Lease < param.MinLease || cfg.Lease > maxLease {
		errs = append(errs, fmt.Errorf("lease %v is outside [%v, %v]", cfg.Lease, param.MinLease, maxLease))
	}
	return errors.Join(errs...)
}

// quicConfig is the QUIC configuration of every connection, either way.
func (cfg *Config) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.MaxIdleTimeout,
		KeepAlivePeriod:                cfg.KeepAlivePeriod,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		MaxIncomingStreams:             cfg.MaxIncomingStreams,
		MaxIncomingUniStreams:          -1,
		// No 0-RTT: its data is replayable (RFC 9001 §9.2), and on a
		// long-lived connection it would only save one RTT per redial.
		Allow0RTT: false,
		Tracer:    cfg.qlogTracer(),
	}
}

// qlogTracer returns quic-go's qlog tracer when the QLOGDIR environment
// variable names a directory that exists or can be created: every peer
// connection then writes a trace there (congestion window, RTT, losses),
// the tool for "why is this peer slow". The directory is checked once
// here because quic-go's tracer exits the process when it cannot create
// it; an unusable QLOGDIR only costs a warning.
func (cfg *Config) qlogTracer() func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	dir := os.Getenv("QLOGDIR")
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		cfg.Logger.Warn("QLOGDIR is unusable; peer connections write no qlog traces", "dir", dir, "err", err)
		return nil
	}
	cfg.Logger.Info("peer connections write qlog traces", "dir", dir)
	return qlog.DefaultConnectionTracer
}

// resetKey returns the configured stateless reset key or a random one.
func (cfg *Config) resetKey() (*quic.StatelessResetKey, bool) {
	var k quic.StatelessResetKey
	if cfg.StatelessResetKey != nil {
		k = *cfg.StatelessResetKey
		return &k, true
	}
	rand.Read(k[:])
	return &k, false
}
