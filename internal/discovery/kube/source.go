package kube

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	mcsclientset "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/ewgw/ewgw/internal/route"
)

// Config configures a Source. Client and Update are required; New applies
// the defaults of the other fields.
type Config struct {
	// Client reads Services and EndpointSlices and runs the permission
	// preflight.
	Client Client
	// MCS reads ServiceExports. Nil: only the AnnotationExport annotation
	// exports services.
	MCS mcsclientset.Interface
	// Namespace limits discovery to one namespace. Default "": all.
	Namespace string
	// EndpointCIDRs, when not empty, are the only prefixes endpoint
	// addresses may be in (the pod and node networks, say); others are
	// skipped. Loopback, link-local, unspecified and multicast addresses
	// are skipped whatever it says.
	EndpointCIDRs []netip.Prefix
	// Debounce is the shortest interval between two snapshots. Default
	// 100ms.
	Debounce time.Duration
	// Update receives each new snapshot, sorted by namespace/name, from one
	// goroutine at a time. It must not modify the snapshot, which shares
	// memory with later ones.
	Update func([]route.Service)
	// Logger reports watch errors, bad annotations and the export mode.
	// Default: discard.
	Logger *slog.Logger
	// Registerer receives the ewgw_discovery_* metrics. Default: a private
	// registry.
	Registerer prometheus.Registerer
}

// DefaultDebounce is Config.Debounce's default.
const DefaultDebounce = 100 * time.Millisecond

// syncTimeout bounds the wait for the informer caches' first list.
const syncTimeout = 60 * time.Second

// Source reports the services of a Kubernetes cluster. Create it with New
// and call Run once.
type Source struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	st      *state
	poke    chan struct{} // informer events since the last rebuild; cap 1
	started atomic.Bool
	synced  atomic.Bool
	// syncedOnce closes syncedC when Synced first turns true, for tests:
	// Update runs before Synced is set, so a test woken by its first
	// snapshot waits here rather than polling.
	syncedOnce sync.Once
	syncedC    chan struct{}
}

// New checks cfg, applies its defaults and registers the metrics.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: Config.Client is required")
	}
	if cfg.Update == nil {
		return nil, errors.New("kube: Config.Update is required")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, log: cfg.Logger, m: m, st: newState(), poke: make(chan struct{}, 1), syncedC: make(chan struct{})}, nil
}

// Synced reports whether every informer cache has synced and the first
// snapshot was reported, while Run runs: the source's part of /readyz.
func (s *Source) Synced() bool { return s.synced.Load() }

// Run checks permissions, starts the informers, waits for their caches,
// reports the first snapshot and then every change until ctx ends. It
// returns at once with an error when the preflight fails (an *RBACError
// for missing permissions) or the caches do not sync within a minute;
// it returns nil when ctx ends.
func (s *Source) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("kube: Source.Run called twice")
	}
	exportVersion, err := s.preflight(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	inf, err := s.startInformers(ctx, exportVersion)
	defer func() {
		cancel()
		inf.shutdown() // waits for the informer goroutines
	}()
	if err != nil {
		return err
	}
	if err := inf.waitForSync(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.rebuild(true)
	s.synced.Store(true)
	s.syncedOnce.Do(func() { close(s.syncedC) })
	defer s.synced.Store(false)
	s.loop(ctx)
	return nil
}

// changed is called by informer handlers after they update the state.
func (s *Source) changed() {
	select {
	case s.poke <- struct{}{}:
	default: // a rebuild is already due
	}
}

// loop rebuilds after informer events, at most once per Debounce: at once
// when the last rebuild is older (leading edge), else when it is due
// (trailing edge), so the last change is always reported.
func (s *Source) loop(ctx context.Context) {
	last := time.Now()
	var due <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.poke:
			if due != nil {
				continue // the pending rebuild will see this change
			}
			if wait := s.cfg.Debounce - time.Since(last); wait > 0 {
				due = time.After(wait)
				continue
			}
		case <-due:
			due = nil
		}
		last = time.Now()
		s.rebuild(false)
	}
}

// rebuild converts the services changed since the last rebuild and reports
// the snapshot when it differs from the last one (or always, with force).
func (s *Source) rebuild(force bool) {
	start := time.Now()
	snap, changed := s.st.rebuild(force)
	s.m.rebuild.Observe(time.Since(start).Seconds())
	if !changed {
		return
	}
	n := 0
	for _, svc := range snap {
		for _, p := range svc.Ports {
			n += len(p.Endpoints)
		}
	}
	s.m.updates.Inc()
	s.m.services.Set(float64(len(snap)))
	s.m.endpoints.Set(float64(n))
	s.cfg.Update(snap)
}
