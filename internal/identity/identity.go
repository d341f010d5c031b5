// Package identity supplies the gateway's SPIFFE identity and the mutual TLS
// configurations peer gateways use to authenticate each other
// (docs/architecture.md, "Peering"). It is the project's only importer of go-spiffe: other packages
// see crypto/tls configurations, SPIFFE IDs as strings, and an Authorizer.
//
// The X509-SVID and trust bundles come from the SPIFFE Workload API (a SPIRE
// agent socket), from PEM files (cert-manager, csi-driver-spiffe, Istio's
// plug-in CA layout, the output of ewgw certs), which are polled and
// reloaded when their content changes, or from the cluster's CA: the
// gateway issues its own short-lived SVID in memory and renews it at half
// its life (ca.go). Certificates are picked per handshake
// and bundles read at verification time, so a rotation applies to the next
// handshake and never touches established connections.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SocketEnv is the environment variable naming the Workload API socket when
// Config.WorkloadAPISocket is empty, e.g. unix:///spiffe-workload-api/spire-agent.sock.
const SocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// ErrNoSocket reports Workload API mode without a socket address.
var ErrNoSocket = errors.New("no workload api socket: set the socket address or " + SocketEnv)

// Config configures New. Exactly one source must be chosen: the Workload API
// (UseWorkloadAPI or a WorkloadAPISocket), Files or CA. Zero fields take the
// defaults given, applied in withDefaults.
type Config struct {
	// UseWorkloadAPI selects the SPIFFE Workload API.
	UseWorkloadAPI bool
	// WorkloadAPISocket is the Workload API address (unix:///path or
	// tcp://ip:port); setting it implies UseWorkloadAPI. Default: the
	// SPIFFE_ENDPOINT_SOCKET environment variable.
	WorkloadAPISocket string
	// Files selects PEM files.
	Files *FileConfig
	// CA selects the cluster's CA, from which the gateway issues its own
	// SVID.
	CA *CAConfig
	// InitTimeout bounds the first Workload API fetch in New. Default 30s.
	InitTimeout time.Duration
	// PollInterval is how often Run checks the files (the CA source's too).
	// Default 2s.
	PollInterval time.Duration
	// Logger reports reloads and their failures. Default: discard.
	Logger *slog.Logger
	// Registerer receives the ewgw_identity_* metrics. Default: a private
	// registry nobody scrapes.
	Registerer prometheus.Registerer
	// Now is the clock for certificate validity and the expiry gauge.
	// Default time.Now.
	Now func() time.Time
}

// FileConfig names the PEM files of the file source.
type FileConfig struct {
	// CertChain holds the X509-SVID: the leaf first, then any
	// intermediates. A root at the end is tolerated.
	CertChain string
	// Key holds the leaf's private key, PKCS#8 ("PRIVATE KEY"), PKCS#1
	// ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"), unencrypted.
	Key string
	// Bundles maps each trusted trust domain ("td" or "spiffe://td") to a
	// PEM file of its root certificates; at least one. Bundles are never
	// merged: a peer's chain must verify to its own trust domain's roots.
	Bundles map[string]string
}

func (c Config) withDefaults() Config {
	if c.InitTimeout <= 0 {
		c.InitTimeout = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Source holds the gateway's current X509-SVID and trust bundles and builds
// peering TLS configurations from them. Its methods are safe for concurrent
// use.
type Source struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	svids   x509svid.Source
	bundles x509bundle.Source
	files   *fileSource             // file and ca modes
	wl      *workloadapi.X509Source // workload api mode

	cert      atomic.Pointer[certEntry]
	auth      atomic.Pointer[Authorizer] // the last policy given, for Expiry
	closeOnce sync.Once
	closeErr  error

	updated func() // test hook: called by Run after each Workload API update
}

// New loads the identity once, so that the Source is usable on return: it
// reads the files (with the CA source, and issues the first SVID), or waits
// at most InitTimeout for the Workload API's first answer. The caller must then call Run, or Close if it never does.
func New(ctx context.Context, cfg Config) (*Source, error) {
	cfg = cfg.withDefaults()
	wl := cfg.UseWorkloadAPI || cfg.WorkloadAPISocket != ""
	switch n := btoi(wl) + btoi(cfg.Files != nil) + btoi(cfg.CA != nil); {
	case n > 1:
		return nil, errors.New("identity: choose only one source of the workload api, files and ca, not both")
	case n == 0:
		return nil, errors.New("identity: no source: choose the workload api, files or ca")
	}
	s := &Source{cfg: cfg, log: cfg.Logger}
	var err error
	switch {
	case wl:
		err = s.openWorkloadAPI(ctx)
	case cfg.CA != nil:
		err = s.openCA()
	default:
		err = s.openFiles(*cfg.Files, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	s.m = newMetrics(cfg.Registerer, s.Expiry, cfg.Now)
	s.log.Info("identity loaded", "spiffe_id", s.ID(), "not_after", s.notAfter())
	s.warnCA()
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Source) openWorkloadAPI(ctx context.Context) error {
	addr := s.cfg.WorkloadAPISocket
	if addr == "" {
		addr = os.Getenv(SocketEnv)
	}
	if addr == "" {
		return ErrNoSocket
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return fmt.Errorf("workload api socket %q: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InitTimeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(
		workloadapi.WithAddr(addr), workloadapi.WithLogger(spiffeLogger{s.log})))
	if err != nil {
		return fmt.Errorf("first fetch from workload api %s (timeout %v): %w", addr, s.cfg.InitTimeout, err)
	}
	s.wl, s.svids, s.bundles = src, src, src
	return nil
}

func (s *Source) openFiles(fc FileConfig, is *issuer) error {
	f, err := newFileSource(fc)
	if err != nil {
		return err
	}
	f.issuer = is
	if _, err := f.load(); err != nil {
		return err
	}
	s.files, s.svids, s.bundles = f, f, f
	return nil
}

func (s *Source) openCA() error {
	c := s.cfg.CA.withDefaults()
	fc := FileConfig{CertChain: c.CertChain, Key: c.Key, Bundles: c.Bundles}
	var errs []error
	if c.CertChain == "" || c.Key == "" {
		errs = append(errs, errors.New("ca: the ca certificate chain and key paths are required"))
	}
	if len(c.Bundles) == 0 {
		errs = append(errs, errors.New("ca: no trust bundle paths"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.openFiles(fc, &issuer{cfg: c, now: s.cfg.Now})
}

// Run keeps the identity current until ctx ends, then releases the source
// and returns the error of closing it, normally nil. With files it polls them every PollInterval; with the
// CA it polls the CA and bundle files likewise and issues a new SVID at
// half the current one's life; with the Workload API the agent pushes
// updates and Run only counts and logs them.
// Once Run has returned, a Workload API source has no SVID left, so new
// handshakes fail; connections already established are unaffected. Call it
// once.
func (s *Source) Run(ctx context.Context) error {
	if s.files != nil {
		s.pollFiles(ctx)
	} else {
		s.watchWorkloadAPI(ctx)
	}
	return s.Close()
}

func (s *Source) watchWorkloadAPI(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wl.Updated():
			s.m.rotations.Inc()
			s.log.Info("identity updated from workload api", "spiffe_id", s.ID(), "not_after", s.notAfter())
			if s.updated != nil {
				s.updated()
			}
		}
	}
}

func (s *Source) pollFiles(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	var renew <-chan time.Time // nil, never ready, unless the CA source
	timer := time.NewTimer(s.until(s.files.cur.Load().renewAt))
	defer timer.Stop()
	if s.files.issuer != nil {
		renew = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.reload() {
				timer.Reset(s.until(s.files.cur.Load().renewAt))
			}
		case <-renew:
			timer.Reset(s.until(s.renew()))
		}
	}
}

// until is the wait until t by the injected clock.
func (s *Source) until(t time.Time) time.Duration { return t.Sub(s.cfg.Now()) }

// Close releases the Workload API connection. Run calls it on return; call it
// only if Run is never called. It is idempotent.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		if s.wl != nil {
			s.closeErr = s.wl.Close()
		}
	})
	return s.closeErr
}

// ID returns the SPIFFE ID of the current SVID, e.g.
// spiffe://cluster-a.example/ns/ewgw/sa/ewgw; "" if the source is closed.
func (s *Source) ID() string {
	svid, err := s.svids.GetX509SVID()
	if err != nil {
		return ""
	}
	return svid.ID.String()
}

// notAfter is the current SVID leaf's expiry; zero if the source is closed.
func (s *Source) notAfter() time.Time {
	svid, err := s.svids.GetX509SVID()
	if err != nil {
		return time.Time{}
	}
	return svid.Certificates[0].NotAfter
}

// spiffeLogger routes go-spiffe's Workload API client messages (stream
// errors, reconnects) to the injected slog.Logger.
type spiffeLogger struct{ l *slog.Logger }

func (l spiffeLogger) Debugf(format string, args ...any) { l.l.Debug(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Infof(format string, args ...any)  { l.l.Info(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Warnf(format string, args ...any)  { l.l.Warn(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Errorf(format string, args ...any) { l.l.Error(fmt.Sprintf(format, args...)) }
