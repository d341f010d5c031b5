// Package procs sizes the Go scheduler to the gateway's load: one P while
// the process is lightly loaded, the runtime's own default above that.
//
// Why: each goroutine hand-off on the data path (TCP reader → QUIC
// connection loop → socket writer, and back) readies a goroutine, and with
// an idle P the runtime wakes another OS thread for it. Where waking a
// sleeping CPU is dear (virtual machines, where it is an inter-processor
// interrupt through the hypervisor), that wake-up costs the waker tens of
// microseconds per hand-off and buys nothing at light load, when one thread
// keeps up. With one P there is no idle P to wake. Under load the default
// comes back within one interval, so throughput keeps every core.
package procs

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultInterval  = 100 * time.Millisecond
	DefaultUp        = 0.9 // cores
	DefaultDown      = 0.7 // cores
	DefaultDownAfter = 10  // intervals, so one second
	// maxDownAfter bounds the back-off of DownAfter after flaps: a minute.
	maxDownAfter = 600
)

// Runtime is the scheduler the governor turns, and the CPU clock it reads.
type Runtime interface {
	// One sets GOMAXPROCS to 1.
	One()
	// Default restores the runtime's own GOMAXPROCS (and its automatic
	// updates, e.g. on a cgroup quota change) and returns it.
	Default() int
	// CPU returns the user plus system CPU time the process has used.
	CPU() (time.Duration, error)
}

// Config configures a Governor. Zero fields take the defaults above.
type Config struct {
	// Runtime is required; Go() is the real one.
	Runtime Runtime
	// Interval is how often load is sampled.
	Interval time.Duration
	// Up: at one P, a sample of at least this many cores of CPU restores
	// the default at once: one P is busy enough that goroutines queue.
	Up float64
	// Down: at the default, DownAfter samples in a row under this many
	// cores go to one P. Keep it under Up: spare Ps spin, so the same
	// traffic reads higher at the default than at one P. A load that goes
	// back up within DownAfter samples of going down is a flap: the wait
	// doubles (up to a minute) until one P holds for that long.
	Down      float64
	DownAfter int
	// Logger reports the start at info and changes at debug level; nil
	// logs nothing.
	Logger *slog.Logger
	// Registerer, when not nil, gets ewgw_procs_changes_total{to}.
	Registerer prometheus.Registerer
}

// Governor switches GOMAXPROCS between 1 and the runtime default by load.
type Governor struct {
	cfg     Config
	max     int // the runtime default, seen at the last switch to it
	procs   int
	quiet   int // consecutive samples under Down
	wait    int // samples under Down that send it to one P: DownAfter, doubled per flap
	atOne   int // samples since the last switch to one P
	changes *prometheus.CounterVec
}

// New returns a governor; Run starts it.
func New(cfg Config) *Governor {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Up <= 0 {
		cfg.Up = DefaultUp
	}
	if cfg.Down <= 0 {
		cfg.Down = DefaultDown
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = DefaultDownAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Governor{cfg: cfg, wait: cfg.DownAfter, changes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ewgw_procs_changes_total",
		Help: "GOMAXPROCS changes by the load governor, by the setting changed to: one, or default.",
	}, []string{"to"})}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.changes)
	}
	return g
}

// start learns the runtime default and, when there is more than one CPU,
// sets one P: a gateway starts with no traffic, and the first busy sample
// brings the default back. It reports whether there is anything to govern.
func (g *Governor) start() bool {
	g.max = g.cfg.Runtime.Default()
	g.procs = g.max
	if g.max <= 1 {
		return false
	}
	g.cfg.Runtime.One()
	g.procs = 1
	g.atOne = g.wait // starting is not a flap
	return true
}

// Interval is the sampling period to tick Run with.
func (g *Governor) Interval() time.Duration { return g.cfg.Interval }

// Run sets one P, then samples the process's CPU at every tick and switches
// until ctx ends, and restores the runtime default. It does nothing on a
// one-CPU host.
func (g *Governor) Run(ctx context.Context, tick <-chan time.Time) error {
	if !g.start() {
		g.cfg.Logger.Info("procs governor: one CPU, nothing to govern")
		return nil
	}
	g.cfg.Logger.Info("procs governor started", "procs", 1, "default", g.max, "up", g.cfg.Up, "down", g.cfg.Down)
	defer func() {
		if g.procs == 1 {
			g.cfg.Runtime.Default()
		}
	}()
	var lastT time.Time
	var lastCPU time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-tick:
			cpu, err := g.cfg.Runtime.CPU()
			if err != nil {
				g.cfg.Logger.Warn("procs governor: cannot read CPU time; leaving the runtime default", "err", err)
				return nil
			}
			if !lastT.IsZero() && t.After(lastT) {
				g.Observe(float64(cpu-lastCPU) / float64(t.Sub(lastT)))
			}
			lastT, lastCPU = t, cpu
		}
	}
}

// Observe takes one load sample, in cores, and switches if it calls for
// it. It returns GOMAXPROCS after the sample.
func (g *Governor) Observe(load float64) int {
	switch {
	case g.procs == 1 && load >= g.cfg.Up:
		if g.atOne < g.wait {
			g.wait = min(2*g.wait, max(maxDownAfter, g.cfg.DownAfter))
		} else {
			g.wait = g.cfg.DownAfter
		}
		g.max = g.cfg.Runtime.Default()
		g.procs, g.quiet = g.max, 0
		g.changes.WithLabelValues("default").Inc()
		g.cfg.Logger.Debug("procs governor: load up, runtime default", "load", load, "procs", g.procs)
	case g.procs > 1 && load < g.cfg.Down:
		g.quiet++
		if g.quiet >= g.wait {
			g.cfg.Runtime.One()
			g.procs, g.quiet, g.atOne = 1, 0, 0
			g.changes.WithLabelValues("one").Inc()
			g.cfg.Logger.Debug("procs governor: light load, one P", "load", load)
		}
	case g.procs > 1:
		g.quiet = 0
	default:
		g.atOne++
	}
	return g.procs
}
