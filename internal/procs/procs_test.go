package procs

import (
	"context"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRuntime records GOMAXPROCS settings and serves clocks the test
// advances.
type fakeRuntime struct {
	def   int
	procs int
	sets  []int

	mu       sync.Mutex // the clocks are set by the test while Run reads them
	cpu      time.Duration
	runnable time.Duration
	read     chan struct{} // if not nil, gets a value after each Runnable
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

func (f *fakeRuntime) Runnable() time.Duration {
	f.mu.Lock()
	r := f.runnable
	f.mu.Unlock()
	if f.read != nil {
		f.read <- struct{}{}
	}
	return r
}

func (f *fakeRuntime) set(cpu, runnable time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpu, f.runnable = cpu, runnable
}

func cpu(c float64) Load   { return Load{CPU: c} }
func queue(q float64) Load { return Load{Queue: q} }

func TestObserve(t *testing.T) {
	rt := &fakeRuntime{def: 16}
	reg := prometheus.NewRegistry()
	g := New(Config{Runtime: rt, DownAfter: 3, Registerer: reg})
	if !g.start() || rt.procs != 1 {
		t.Fatalf("start: runtime at %d, want 1", rt.procs)
	}
	steps := []struct {
		load Load
		want int
	}{
		{Load{0.5, 0.1}, 1},            // under Up stays at one
		{Load{0.89, 0.49}, 1},          // still under both
		{cpu(0.9), 16},                 // Up by CPU: the default at once
		{cpu(0.1), 16}, {cpu(0.1), 16}, // two light samples: not yet
		{cpu(0.7), 16},                                 // at or over Down resets the count
		{cpu(0.4), 16}, {cpu(0.69), 16}, {cpu(0.2), 1}, // three in a row: one P
		{cpu(0.5), 1}, {cpu(0.5), 1}, {cpu(0.5), 1}, // three samples at one P: no flap
		{queue(0.5), 16},                           // Up by queue: goroutines wait for the one P
		{Load{0.1, 0.1}, 16}, {Load{0.1, 0.2}, 16}, // a queue at Down resets the count
		{queue(0.1), 16}, {queue(0.1), 16}, {queue(0.1), 1},
	}
	for i, s := range steps {
		if got := g.Observe(s.load); got != s.want {
			t.Fatalf("step %d: load %+v: procs %d, want %d", i, s.load, got, s.want)
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

// TestQueueCounts: where the queue does not count, CPU alone decides,
// both ways; the queue counts again from the sample where it does.
func TestQueueCounts(t *testing.T) {
	rt := &fakeRuntime{def: 4}
	counts := false
	g := New(Config{Runtime: rt, DownAfter: 2, QueueCounts: func() bool { return counts }})
	if !g.start() {
		t.Fatal("start: nothing to govern")
	}
	steps := []struct {
		counts bool
		load   Load
		want   int
	}{
		{false, Load{0.3, 5}, 1},                           // a long queue alone: still one P
		{false, Load{0.9, 0}, 4},                           // CPU: the default
		{false, Load{0.3, 5}, 4}, {false, Load{0.3, 5}, 1}, // light by CPU, queue or not
		{true, Load{0.3, 0.5}, 4},                            // the queue counts again: up
		{true, Load{0.3, 0.3}, 4}, {true, Load{0.3, 0.3}, 4}, // and holds it up
		{false, Load{0.3, 0.3}, 4}, {false, Load{0.3, 0.3}, 4}, // after a flap the wait is doubled
		{false, Load{0.3, 0.3}, 4}, {false, Load{0.3, 0.3}, 1},
	}
	for i, s := range steps {
		counts = s.counts
		if got := g.Observe(s.load); got != s.want {
			t.Fatalf("step %d: load %+v, queue counts %v: procs %d, want %d", i, s.load, s.counts, got, s.want)
		}
	}
}

// TestRun drives Run with a fake clock: load is CPU time, and runnable
// time, over wall time between ticks; the default comes back when Run ends.
func TestRun(t *testing.T) {
	rt := &fakeRuntime{def: 4, read: make(chan struct{})}
	g := New(Config{Runtime: rt, DownAfter: 2})
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, tick) }()
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	send := func(i int, cpu, runnable time.Duration) {
		rt.set(cpu, runnable)
		tick <- t0.Add(time.Duration(i) * 100 * ms)
		<-rt.read // Run has read the clocks for this tick
	}
	// Ticks are unbuffered: once the next send returns, Run has handled the
	// previous one, so reading rt after a further send is race-free.
	send(0, 0, 0) // Run starts at one P
	send(1, 10*ms, 0)
	if rt.procs != 1 {
		t.Fatalf("at start procs = %d, want 1", rt.procs)
	}
	send(2, 100*ms, 0) // 0.9 cores: the default
	send(3, 110*ms, 0) // 0.1 cores
	if rt.procs != 4 {
		t.Fatalf("after a busy sample procs = %d, want 4", rt.procs)
	}
	send(4, 120*ms, 0)      // 0.1 cores: one P again
	send(5, 130*ms, 60*ms)  // 0.6 goroutines waiting: a flap, so the wait doubles to 4
	send(6, 140*ms, 70*ms)  // queue 0.1
	send(7, 150*ms, 80*ms)  //
	send(8, 160*ms, 90*ms)  //
	send(9, 170*ms, 100*ms) // fourth light sample: one P
	send(10, 180*ms, 100*ms)
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
	g.Observe(cpu(1)) // the default; not a flap, the wait stays 10
	var waits []int
	for range 8 {
		n := 0
		for g.Observe(cpu(0.1)) > 1 {
			n++
		}
		waits = append(waits, n+1)
		g.Observe(cpu(1)) // straight back up: a flap
	}
	if want := []int{10, 20, 40, 80, 160, 320, 600, 600}; !slices.Equal(waits, want) {
		t.Fatalf("light samples before one P: %v, want %v", waits, want)
	}
	for g.Observe(cpu(0.1)) > 1 {
	}
	for range 600 {
		g.Observe(cpu(0.1)) // a minute at one P
	}
	g.Observe(cpu(1))
	n := 1
	for g.Observe(cpu(0.1)) > 1 {
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

// TestGoRuntime reads the real clocks: CPU time and runnable time move
// forward under goroutines that keep yielding.
func TestGoRuntime(t *testing.T) {
	rt := Go()
	cpu0, err := rt.CPU()
	if err != nil {
		t.Fatal(err)
	}
	run0 := rt.Runnable()
	// Eight goroutines yielding 2,000 times each, more than there are Ps:
	// each yield is runnable time, some of it spent waiting for a P.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	cpu1, err := rt.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 <= cpu0 {
		t.Fatalf("CPU time did not advance: %v then %v", cpu0, cpu1)
	}
	if run1 := rt.Runnable(); run1 <= run0 {
		t.Fatalf("runnable time did not advance over 16,000 yields: %v then %v", run0, run1)
	}
}

func TestHistogramSum(t *testing.T) {
	h := &metrics.Float64Histogram{
		Counts:  []uint64{2, 1, 0, 4},
		Buckets: []float64{math.Inf(-1), 0.001, 0.003, 0.005, math.Inf(1)},
	}
	// 2 × 0.001 (open below: the edge) + 1 × 0.002 + 4 × 0.005 (open above)
	want := time.Duration((0.002 + 0.002 + 0.020) * float64(time.Second))
	if got := histogramSum(h); got != want {
		t.Fatalf("sum %v, want %v", got, want)
	}
}
