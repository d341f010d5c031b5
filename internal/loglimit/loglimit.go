// Package loglimit keeps log lines from being a lever: a slog.Handler that
// passes each message at a bounded rate and drops the rest, so a flood of
// connections, bad hellos or a peer's bad catalogue entries cannot fill the
// disk or drown the lines that matter. Every line that follows a drop says
// how many lines of its message were dropped before it, and a counter
// totals the drops by level.
package loglimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultRate is how many lines per second each message may write
	// once its burst is spent.
	DefaultRate = 5
	// DefaultBurst is how many lines of one message may come at once.
	DefaultBurst = 20
	// maxKeys bounds the messages tracked one by one; the rest share one
	// budget, so the limiter's own memory cannot be flooded either.
	maxKeys = 4096
)

// DroppedAttr is the attribute a line carries when lines of its message
// were dropped since the previous one written.
const DroppedAttr = "log_dropped"

// Config configures a Handler. Zero fields take the defaults.
type Config struct {
	Rate  float64 // lines per second per message; default DefaultRate
	Burst int     // default DefaultBurst
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler wraps a slog.Handler with a per-message rate limit. Handlers made
// by WithAttrs and WithGroup share their parent's budgets.
type Handler struct {
	inner slog.Handler
	st    *state
}

type state struct {
	cfg     Config
	dropped *prometheus.CounterVec // level
	mu      sync.Mutex
	buckets map[key]*bucket
}

type key struct {
	level slog.Level
	msg   string
}

// bucket is a token bucket and the lines dropped since the last one passed.
type bucket struct {
	tokens  float64
	last    time.Time
	dropped int
}

// New wraps inner.
func New(inner slog.Handler, cfg Config) *Handler {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{inner: inner, st: &state{
		cfg: cfg,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_log_dropped_total",
			Help: "Log lines dropped by the per-message rate limit, by level.",
		}, []string{"level"}),
		buckets: map[key]*bucket{},
	}}
}

// Dropped is the ewgw_log_dropped_total counter, for a registry.
func (h *Handler) Dropped() prometheus.Collector { return h.st.dropped }

// Enabled reports the inner handler's answer.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle writes r if its message has budget left, with DroppedAttr when
// lines of the message were dropped before it; otherwise it drops r.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	pass, dropped := h.st.take(key{r.Level, r.Message})
	if !pass {
		h.st.dropped.WithLabelValues(r.Level.String()).Inc()
		return nil
	}
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(DroppedAttr, dropped))
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a handler sharing h's budgets.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(as), st: h.st}
}

// WithGroup returns a handler sharing h's budgets.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), st: h.st}
}

// take spends a token of k's bucket. It reports whether the line passes
// and, if so, how many lines of k were dropped since the last that did.
func (s *state) take(k key) (pass bool, dropped int) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[k]
	if !ok {
		if len(s.buckets) >= maxKeys {
			k = key{level: k.level, msg: "\x00other"}
			b = s.buckets[k]
		}
		if b == nil {
			b = &bucket{tokens: float64(s.cfg.Burst), last: now}
			s.buckets[k] = b
		}
	}
	b.tokens = min(float64(s.cfg.Burst), b.tokens+now.Sub(b.last).Seconds()*s.cfg.Rate)
	b.last = now
	if b.tokens < 1 {
		b.dropped++
		return false, 0
	}
	b.tokens--
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}
