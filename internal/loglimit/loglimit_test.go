package loglimit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// TestFlood: a flood of one message passes its burst, then its rate; the
// next line written says how many were dropped; other messages keep their
// own budgets; derived loggers share them.
func TestFlood(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	h := New(slog.NewJSONHandler(&buf, nil), Config{Rate: 2, Burst: 3, Now: c.now})
	log := slog.New(h)
	child := log.With("peer", "b")
	for range 1000 {
		child.Info("conn rejected", "reason", "not_tls")
	}
	log.Warn("other message")
	got := lines(t, &buf)
	if len(got) != 4 {
		t.Fatalf("%d lines written, want the burst of 3 and the other message", len(got))
	}
	if got[3]["msg"] != "other message" || got[0]["peer"] != "b" {
		t.Errorf("lines %v", got)
	}
	if n := testutil.ToFloat64(h.st.dropped.WithLabelValues("INFO")); n != 997 {
		t.Errorf("dropped INFO = %v, want 997", n)
	}
	// Half a second refills one token at 2/s: one line, which reports the
	// 997 dropped before it.
	c.t = c.t.Add(500 * time.Millisecond)
	log.Info("conn rejected")
	log.Info("conn rejected")
	got = lines(t, &buf)
	if len(got) != 1 || got[0][DroppedAttr] != float64(997) {
		t.Fatalf("after refill: %v", got)
	}
	// A quiet minute refills the burst, no more.
	c.t = c.t.Add(time.Minute)
	for range 10 {
		log.Info("conn rejected")
	}
	if got := lines(t, &buf); len(got) != 3 || got[0][DroppedAttr] != float64(1) {
		t.Fatalf("after a quiet minute: %v", got)
	}
}

// TestManyMessages: distinct messages past the tracked limit share one
// budget instead of growing the limiter.
func TestManyMessages(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	h := New(slog.NewJSONHandler(&buf, nil), Config{Rate: 1, Burst: 1, Now: c.now})
	for i := range maxKeys + 100 {
		_ = h.Handle(context.Background(), slog.NewRecord(c.t, slog.LevelInfo, strings.Repeat("x", i%50)+string(rune('a'+i%26))+time.Duration(i).String(), 0))
	}
	if n := len(h.st.buckets); n > maxKeys+1 {
		t.Fatalf("%d buckets, want at most %d", n, maxKeys+1)
	}
}
