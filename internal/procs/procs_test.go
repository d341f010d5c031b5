package procs

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRuntime records GOMAXPROCS settings and serves a CPU clock the test
// advances.
type fakeRuntime struct {
	def   int
	procs int
	sets  []int

	mu  sync.Mutex // cpu is set by the test while Run reads it
	cpu time.Duration
}

func (f *fakeRuntime) One() { f.procs = 1; f.sets = append(f.sets, 1) }

func (f *fakeRuntime) Default() int {
	f.procs = f.def
	f.sets = append(f.sets, f.def)
	return f.def
}

func (f *fakeRuntime) CPU() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cpu, nil
}

func (f *fakeRuntime) setCPU(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpu = d
}

func TestObserve(t *testing.T) {
	rt := &fakeRuntime{def: 16}
	reg := prometheus.NewRegistry()
	g := New(Config{Runtime: rt, DownAfter: 3, Registerer: reg})
	if !g.start() || rt.procs != 1 {
		t.Fatalf("start: runtime at %d, want 1", rt.procs)
	}
	steps := []struct {
		load float64
		want int
	}{
		{0.5, 1},             // under Up stays at one
		{0.89, 1},            // still under
		{0.9, 16},            // Up: the default at once
		{0.1, 16}, {0.1, 16}, // two quiet samples: not yet
		{0.7, 16},                       // at or over Down resets the count
		{0.4, 16}, {0.69, 16}, {0.2, 1}, // three in a row: one P
		{0.5, 1}, {0.5, 1}, {0.5, 1}, // three samples at one P: no flap
		{1.0, 16},
		{0.1, 16}, {0.1, 16}, {0.1, 1},
	}
	for i, s := range steps {
		if got := g.Observe(s.load); got != s.want {
			t.Fatalf("step %d: load %.2f: procs %d, want %d", i, s.load, got, s.want)
		}
		if rt.procs != s.want {
			t.Fatalf("step %d: runtime at %d, want %d", i, rt.procs, s.want)
		}
	}
	if got := testutil.ToFloat64(g.changes.WithLabelValues("one")); got != 2 {
		t.Errorf("changes to one = %v, want 2", got)
	}
	if got := testutil.ToFloat64(g.changes.WithLabelValues("default")); got != 2 {
		t.Errorf("changes to default = %v, want 2", got)
	}
}

// TestRun drives Run with a fake clock: load is CPU time over wall time
// between ticks, and the default comes back when Run ends.
func TestRun(t *testing.T) {
	rt := &fakeRuntime{def: 4}
	g := New(Config{Runtime: rt, DownAfter: 2})
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, tick) }()
	t0 := time.Unix(1000, 0)
	send := func(i int, cpu time.Duration) {
		rt.setCPU(cpu)
		tick <- t0.Add(time.Duration(i) * 100 * time.Millisecond)
	}
	// Ticks are unbuffered: once the next send returns, Run has handled the
	// previous one, so reading rt after a further send is race-free.
	send(0, 0) // Run starts at one P
	send(1, 10*time.Millisecond)
	if rt.procs != 1 {
		t.Fatalf("at start procs = %d, want 1", rt.procs)
	}
	send(2, 100*time.Millisecond) // 0.9 cores: the default
	send(3, 110*time.Millisecond) // 0.1 cores
	if rt.procs != 4 {
		t.Fatalf("after a busy sample procs = %d, want 4", rt.procs)
	}
	send(4, 120*time.Millisecond) // 0.1 cores: one P again
	send(5, 210*time.Millisecond) // 0.9 cores: a flap, so the wait doubles to 4
	send(6, 220*time.Millisecond)
	send(7, 230*time.Millisecond)
	send(8, 240*time.Millisecond)
	send(9, 250*time.Millisecond) // fourth light sample: one P
	send(10, 260*time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []int{4, 1, 4, 1, 4, 1, 4}; !slices.Equal(rt.sets, want) {
		t.Fatalf("settings %v, want %v (the last: the default back when Run ended)", rt.sets, want)
	}
}

// TestFlapBackOff: a load that rises again right after each switch to one P
// doubles the wait before the next, up to a minute, and a spell at one P
// longer than the wait resets it.
func TestFlapBackOff(t *testing.T) {
	rt := &fakeRuntime{def: 8}
	g := New(Config{Runtime: rt, DownAfter: 10})
	g.start()
	g.Observe(1) // the default; not a flap, the wait stays 10
	var waits []int
	for range 8 {
		n := 0
		for g.Observe(0.1) > 1 {
			n++
		}
		waits = append(waits, n+1)
		g.Observe(1) // straight back up: a flap
	}
	if want := []int{10, 20, 40, 80, 160, 320, 600, 600}; !slices.Equal(waits, want) {
		t.Fatalf("light samples before one P: %v, want %v", waits, want)
	}
	for g.Observe(0.1) > 1 {
	}
	for range 600 {
		g.Observe(0.1) // a minute at one P
	}
	g.Observe(1)
	n := 1
	for g.Observe(0.1) > 1 {
		n++
	}
	if n != 10 {
		t.Fatalf("after a stable minute at one P: %d light samples before one P, want 10", n)
	}
}

// TestOneCPU: on a one-CPU host there is nothing to switch.
func TestOneCPU(t *testing.T) {
	rt := &fakeRuntime{def: 1}
	g := New(Config{Runtime: rt})
	tick := make(chan time.Time)
	if err := g.Run(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	if len(rt.sets) != 1 {
		t.Fatalf("settings %v, want only the initial default", rt.sets)
	}
}

// TestGoRuntime reads the real CPU clock: it moves forward under work.
func TestGoRuntime(t *testing.T) {
	rt := Go()
	before, err := rt.CPU()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after, err := rt.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU time did not advance over 20ms of work: %v then %v (%d loops)", before, after, x)
	}
}
