// Package procs sizes the Go scheduler to the gateway's load: one P while
// the process is lightly loaded, the runtime's own default above that.
//
// Why: each goroutine hand-off on the data path (TCP reader → QUIC
// connection loop → socket writer, and back) readies a goroutine, and with
// an idle P the runtime wakes another OS thread for it. Where waking a
// sleeping CPU is dear (virtual machines, where it is an inter-processor
// interrupt through the hypervisor), that wake-up costs the waker tens of
// microseconds per hand-off and buys nothing while one P keeps up. When
// it nears a full core, or goroutines start queueing for the one P where
// that queue matters (Config.QueueCounts), the default comes back within
// one interval.
package procs

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Load is one sample: CPU in cores (process user plus system time over wall
// time) and Queue, the mean number of goroutines that were runnable but
// waiting for a P (time spent runnable over wall time).
type Load struct {
	CPU, Queue float64
}

// Defaults for Config.
var (
	// DefaultUp: one P is nearly a full core, or half a goroutine on
	// average waits for it.
	DefaultUp = Load{CPU: 0.9, Queue: 0.5}
	// DefaultDown: well under a core and nearly no queue.
	DefaultDown = Load{CPU: 0.7, Queue: 0.2}
)

const (
	DefaultInterval  = 100 * time.Millisecond
	DefaultDownAfter = 10 // samples, so one second
	// maxDownAfter bounds the back-off of the wait after flaps: a minute.
	maxDownAfter = 600
)

// Runtime is the scheduler the governor turns, and the clocks it reads.
type Runtime interface {
	// One sets GOMAXPROCS to 1.
	One()
	// Default restores the runtime's own GOMAXPROCS (and its automatic
	// updates, e.g. on a cgroup quota change) and returns it.
	Default() int
	// CPU returns the user plus system CPU time the process has used.
	CPU() (time.Duration, error)
	// Runnable returns the total time goroutines have spent runnable
	// before running, since the process started.
	Runnable() time.Duration
}

// Config configures a Governor. Zero fields take the defaults above.
type Config struct {
	// Runtime is required; Go() is the real one.
	Runtime Runtime
	// Interval is how often load is sampled.
	Interval time.Duration
	// Up: at one P, one sample at or over either figure restores the
	// default at once.
	Up Load
	// Down: at the default, DownAfter samples in a row under both figures
	// go to one P. Keep Down.CPU under Up.CPU: spare Ps spin, so the same
	// traffic reads higher at the default than at one P. A load that goes
	// back up within the wait of going down is a flap: the wait doubles
	// (up to a minute) until one P holds for that long.
	Down      Load
	DownAfter int
	// QueueCounts, when not nil, is asked once per sample whether the
	// queue figure applies to it; when it says no, CPU alone decides, up
	// and down. A queue costs only latency where goroutines that every
	// connection shares (the tunnel's QUIC connections) wait in it; a
	// burst of independent connections (local splicing) is cleared
	// fastest, and with the least CPU, by the one P. Nil: the queue
	// always counts.
	QueueCounts func() bool
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
	if cfg.Up == (Load{}) {
		cfg.Up = DefaultUp
	}
	if cfg.Down == (Load{}) {
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

// Interval is the sampling period to tick Run with.
func (g *Governor) Interval() time.Duration { return g.cfg.Interval }

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

// Run sets one P, then samples the process's load at every tick and
// switches until ctx ends, and restores the runtime default. It does
// nothing on a one-CPU host, or where it cannot read the process's CPU time.
func (g *Governor) Run(ctx context.Context, tick <-chan time.Time) error {
	if _, err := g.cfg.Runtime.CPU(); err != nil {
		g.cfg.Logger.Warn("procs governor: cannot read CPU time; leaving the runtime default", "err", err)
		return nil
	}
	if !g.start() {
		g.cfg.Logger.Info("procs governor: one CPU, nothing to govern")
		return nil
	}
	g.cfg.Logger.Info("procs governor started", "procs", 1, "default", g.max,
		"up_cpu", g.cfg.Up.CPU, "up_queue", g.cfg.Up.Queue, "down_cpu", g.cfg.Down.CPU, "down_queue", g.cfg.Down.Queue)
	defer func() {
		if g.procs == 1 {
			g.cfg.Runtime.Default()
		}
	}()
	var lastT time.Time
	var lastCPU, lastRunnable time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-tick:
			cpu, err := g.cfg.Runtime.CPU()
			if err != nil {
				g.cfg.Logger.Warn("procs governor: cannot read CPU time; back to the runtime default", "err", err)
				return nil
			}
			runnable := g.cfg.Runtime.Runnable()
			if wall := t.Sub(lastT); !lastT.IsZero() && wall > 0 {
				g.Observe(Load{
					CPU:   float64(cpu-lastCPU) / float64(wall),
					Queue: float64(runnable-lastRunnable) / float64(wall),
				})
			}
			lastT, lastCPU, lastRunnable = t, cpu, runnable
		}
	}
}

// Observe takes one load sample and switches if it calls for it. It
// returns GOMAXPROCS after the sample.
func (g *Governor) Observe(l Load) int {
	queued := g.cfg.QueueCounts == nil || g.cfg.QueueCounts()
	busy := l.CPU >= g.cfg.Up.CPU || queued && l.Queue >= g.cfg.Up.Queue
	light := l.CPU < g.cfg.Down.CPU && (!queued || l.Queue < g.cfg.Down.Queue)
	switch {
	case g.procs == 1 && busy:
		if g.atOne < g.wait {
			g.wait = min(2*g.wait, max(maxDownAfter, g.cfg.DownAfter))
		} else {
			g.wait = g.cfg.DownAfter
		}
		g.max = g.cfg.Runtime.Default()
		g.procs, g.quiet = g.max, 0
		g.changes.WithLabelValues("default").Inc()
		g.cfg.Logger.Debug("procs governor: load up, runtime default", "cpu", l.CPU, "queue", l.Queue, "procs", g.procs)
	case g.procs == 1:
		g.atOne++
	case light:
		g.quiet++
		if g.quiet >= g.wait {
			g.cfg.Runtime.One()
			g.procs, g.quiet, g.atOne = 1, 0, 0
			g.changes.WithLabelValues("one").Inc()
			g.cfg.Logger.Debug("procs governor: light load, one P", "cpu", l.CPU, "queue", l.Queue)
		}
	default:
		g.quiet = 0
	}
	return g.procs
}
