package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
	"github.com/ewgw/ewgw/perf/wan"
)

// cell is one shape of the link the figures are taken at.
type cell struct {
	RTT  time.Duration `json:"rtt"`
	Loss float64       `json:"loss"`
}

func (c cell) String() string { return fmt.Sprintf("RTT %s, loss %g%%", c.RTT, c.Loss*100) }

// sample is one path's figures in one cell.
type sample struct {
	TTFBP50, TTFBP99 time.Duration
	TTFBN            int
	RTTP50, RTTP99   time.Duration
	RTTN             int
	// Warm round trips on one connection while a -streams download runs
	// through the same path: what a bulk transfer's queues and losses
	// cost a request beside it (on the TCP transport, one lost segment
	// stalls every stream of its connection).
	LoadedP50, LoadedP99 time.Duration
	LoadedN              int
	Down, Down8          float64 // Gbit/s
	Rate                 float64 // new connections per second
	// The emulator's report over each bulk download.
	LinkDown, LinkDown8 wan.Report
	// CPU seconds of the path's processes (A side first) over each
	// download.
	CPUDown, CPUDown8 []float64
	// Ramp is one download's rate in Mbit/s, second by second (only in
	// the ramp cell).
	Ramp   []float64
	Busy   float64  // worst CPU fraction others used before a test
	Errors []string // tests that failed (their figures stay zero)
}

// results is everything one run measured.
type results struct {
	Machine string                       `json:"machine"`
	Started time.Time                    `json:"started"`
	Rate    float64                      `json:"rate"`
	BulkFor time.Duration                `json:"bulk_for"`
	Streams int                          `json:"streams"`
	Cells   []cell                       `json:"cells"`
	Paths   []string                     `json:"paths"`
	Samples map[string]map[string]sample `json:"samples"` // cell.String() → path → sample
	Memory  []memory                     `json:"memory,omitempty"`
}

func (r *results) get(c cell, path string) sample { return r.Samples[c.String()][path] }

// runBench runs in NamespaceA: it starts the server and every path, takes
// the memory figure, then every figure at every RTT and loss, and writes
// the report.
func runBench(o options) error {
	raiseFileLimit()
	dir, cleanup, err := bench.TempDir("ewgw-perf-wan-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	ctl := wan.NewClient(o.ctl)
	if err := ctl.Set(wan.Config{Delay: o.memRTT / 2}); err != nil {
		return err
	}
	srv, _, client, err := bench.StartTLSBackendWith(inB, dir, "-role=backend", "-listen", wan.AddrB+":"+portServer)
	if err != nil {
		return err
	}
	defer bench.Stop(srv, 5*time.Second)
	certs, err := bench.MintCerts(o.ewgw, dir)
	if err != nil {
		return err
	}
	e := &env{o: o, dir: dir, certs: certs, server: wan.AddrB + ":" + portServer, client: client}
	var paths []*path
	defer func() {
		for _, p := range paths {
			p.stop()
		}
	}()
	for _, name := range o.paths {
		p, err := e.startPath(name)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	res := &results{Machine: bench.Machine(), Started: time.Now(), Rate: o.rate, Paths: o.paths,
		BulkFor: o.bulkFor, Streams: o.streams,
		Samples: map[string]map[string]sample{}}
	fmt.Fprintln(os.Stderr, res.Machine)
	if slices.Contains(o.tests, "mem") {
		if res.Memory, err = measureMemory(o, ctl, paths, client); err != nil {
			return err
		}
	}
	for _, rtt := range o.rtts {
		for _, loss := range o.losses {
			c := cell{RTT: rtt, Loss: loss}
			res.Cells = append(res.Cells, c)
			if err := measureCell(e, ctl, c, paths, res); err != nil {
				return err
			}
		}
	}
	return writeReport(o, res)
}

// measureCell shapes the link as c and takes every figure on every path,
// the path order rotated from cell to cell.
func measureCell(e *env, ctl *wan.Client, c cell, paths []*path, res *results) error {
	ramp := c.RTT == e.o.rampRTT && c.Loss == 0
	if err := ctl.Set(wan.Config{Delay: c.RTT / 2, Loss: c.Loss, Rate: e.o.rate}); err != nil {
		return err
	}
	res.Samples[c.String()] = map[string]sample{}
	k := len(res.Cells) % len(paths)
	for _, i := range append(indexes(k, len(paths)), indexes(0, k)...) {
		p := paths[i]
		fmt.Fprintf(os.Stderr, "%s: %s\n", c, p.name)
		if e.o.fresh && len(p.procs) > 0 {
			// The gateways' QUIC connection keeps its congestion state
			// from one cell to the next; a new pair starts on this link.
			p.stop()
			np, err := e.startPath(p.name)
			if err != nil {
				return err
			}
			paths[i], p = np, np
		}
		s, err := measure(e, ctl, p, ramp)
		if err != nil {
			return fmt.Errorf("%s, %s: %w%s", c, p.name, err, p.logs())
		}
		res.Samples[c.String()][p.name] = s
	}
	return nil
}

// indexes returns from, from+1, ..., to-1.
func indexes(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// measure takes the selected figures on p, each after the machine is
// quiet. Skipped tests leave their fields zero.
func measure(e *env, ctl *wan.Client, p *path, ramp bool) (sample, error) {
	o, client := e.o, e.client
	var s sample
	tests := []struct {
		name string
		run  func() error
	}{
		{"ttfb", func() error {
			tt, err := bench.TTFB(p.addr, client, o.ttfbs, o.ttfbFor)
			if err == nil {
				s.TTFBP50, s.TTFBP99 = bench.P50P99(tt)
				s.TTFBN = len(tt)
			}
			return err
		}},
		{"rtt", func() error {
			rtt, err := bench.WarmRTT(p.addr, client, 64, 20, o.rttN, o.rttFor)
			if err == nil {
				s.RTTP50, s.RTTP99 = bench.P50P99(rtt)
				s.RTTN = len(rtt)
			}
			return err
		}},
		{"down", func() (err error) {
			s.LinkDown, s.CPUDown, err = during(ctl, p, func() (err error) { s.Down, err = bench.Download(p.addr, client, 1, o.bulkFor); return })
			return err
		}},
		{"down8", func() (err error) {
			s.LinkDown8, s.CPUDown8, err = during(ctl, p, func() (err error) {
				s.Down8, err = bench.Download(p.addr, client, o.streams, o.bulkFor)
				return
			})
			return err
		}},
		{"loaded", func() error {
			rtt, err := loadedRTT(p.addr, client, o)
			if err == nil {
				s.LoadedP50, s.LoadedP99 = bench.P50P99(rtt)
				s.LoadedN = len(rtt)
			}
			return err
		}},
		{"ramp", func() (err error) {
			if ramp {
				s.Ramp, err = bench.Trace(p.addr, client, o.rampFor, time.Second)
			}
			return err
		}},
		{"rate", func() (err error) { s.Rate, err = bench.ConnRate(p.addr, client, o.workers, o.rateFor); return }},
	}
	for _, t := range tests {
		if !slices.Contains(o.tests, t.name) {
			continue
		}
		s.Busy = max(s.Busy, bench.WaitQuiet(o.maxBusy, p.pids()...))
		if err := t.run(); err != nil {
			// One lost figure should not cost the rest of a long run.
			fmt.Fprintf(os.Stderr, "%s on %s failed: %v\n", t.name, p.name, err)
			s.Errors = append(s.Errors, fmt.Sprintf("%s: %v", t.name, err))
		}
	}
	return s, nil
}

// loadedRTT takes warm round trips on one connection through addr while a
// download on o.streams connections runs: it starts them once the download
// had a second to fill the link, and stops a second before it ends.
func loadedRTT(addr string, client *tls.Config, o options) ([]time.Duration, error) {
	down := make(chan error, 1)
	go func() {
		_, err := bench.Download(addr, client, o.streams, o.bulkFor)
		down <- err
	}()
	time.Sleep(time.Second)
	rtt, err := bench.WarmRTT(addr, client, 64, 20, o.rttN, min(o.rttFor, o.bulkFor-2*time.Second))
	return rtt, errors.Join(err, <-down)
}

// during returns the emulator's report over f (its counters from zero, its
// CPU seconds over f in CPU) and the CPU seconds of p's processes.
func during(ctl *wan.Client, p *path, f func() error) (wan.Report, []float64, error) {
	if err := ctl.Reset(); err != nil {
		return wan.Report{}, nil, err
	}
	before, err := ctl.Report()
	if err != nil {
		return wan.Report{}, nil, err
	}
	cpu := make([]float64, len(p.procs))
	for i, q := range p.procs {
		cpu[i] = bench.CPU(q.pid())
	}
	if err := f(); err != nil {
		return wan.Report{}, nil, err
	}
	for i, q := range p.procs {
		cpu[i] = bench.CPU(q.pid()) - cpu[i]
	}
	after, err := ctl.Report()
	after.CPU -= before.CPU
	after.DeviceDrop -= before.DeviceDrop
	return after, cpu, err
}

// raiseFileLimit lifts this process's open-file limit (and so its
// children's) to 2^20, for the idle-connection figure; as root it may.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Max = max(l.Max, 1<<20)
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) // best effort: the figure reports how many connections it opened
	}
}
