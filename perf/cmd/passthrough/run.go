package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// sample is one round's results for one path. CPU fields are the proxy
// process's (and its children's) user+system seconds during that test.
type sample struct {
	down, up, rate          float64 // Gbit/s, Gbit/s, connections/s
	rttP50, rttP99          time.Duration
	ttfbP50, ttfbP99        time.Duration
	cpuDown, cpuUp, cpuRate float64
	cpuPerConn              float64 // cpuRate per connection made
	// The whole machine's busy CPU seconds during the test (bench.MachineCPU).
	sysDown, sysUp, sysPerConn float64
	busy                       float64 // worst CPU fraction others used before a test
}

// measureAll runs every test on every path, o.rounds times, rotating the
// path order each round, and returns the samples by path name.
func measureAll(o options, paths []*path, client *tls.Config) (map[string][]sample, error) {
	res := map[string][]sample{}
	for r := range o.rounds {
		order := append(slices.Clone(paths[r%len(paths):]), paths[:r%len(paths)]...)
		for _, p := range order {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", r+1, p.name)
			s, err := measure(o, p, client)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			res[p.name] = append(res[p.name], s)
		}
	}
	return res, nil
}

// testNames lists the tests in the order they run.
var testNames = []string{"down", "up", "rate", "rtt", "ttfb"}

// measure runs each selected test once on p, each after the machine is
// quiet. Skipped tests leave their fields zero.
func measure(o options, p *path, client *tls.Config) (sample, error) {
	var s sample
	tests := map[string]func() error{
		"down": func() (err error) {
			s.cpuDown, s.sysDown, err = p.cpuDuring(func() (err error) { s.down, err = bench.Bulk(p.addr, client, 0, o.bulkBytes); return })
			return err
		},
		"up": func() (err error) {
			s.cpuUp, s.sysUp, err = p.cpuDuring(func() (err error) { s.up, err = bench.Bulk(p.addr, client, o.bulkBytes, 0); return })
			return err
		},
		"rate": func() (err error) {
			var sys float64
			s.cpuRate, sys, err = p.cpuDuring(func() (err error) { s.rate, err = bench.ConnRate(p.addr, client, o.workers, o.rateFor); return })
			if s.rate > 0 {
				conns := s.rate * o.rateFor.Seconds()
				s.cpuPerConn, s.sysPerConn = s.cpuRate/conns, sys/conns
			}
			return err
		},
		"rtt": func() error {
			rtt, err := bench.WarmRTT(p.addr, client, 64, 1000, o.rtts, 0)
			if err == nil {
				s.rttP50, s.rttP99 = bench.P50P99(rtt)
			}
			return err
		},
		"ttfb": func() error {
			tt, err := bench.TTFB(p.addr, client, o.ttfbs, 0)
			if err == nil {
				s.ttfbP50, s.ttfbP99 = bench.P50P99(tt)
			}
			return err
		},
	}
	for _, name := range testNames {
		if !slices.Contains(o.tests, name) {
			continue
		}
		s.busy = max(s.busy, bench.WaitQuiet(o.maxBusy))
		if err := tests[name](); err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s, nil
}

// cpu returns the user+system CPU seconds of p's processes and their
// direct children (nginx workers); 0 for the direct path.
func (p *path) cpu() float64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	s := bench.CPU(p.cmd.Process.Pid)
	if p.next != nil {
		s += p.next.cpu()
	}
	return s
}

// cpuDuring returns the proxy's and the whole machine's CPU seconds that f
// took.
func (p *path) cpuDuring(f func() error) (proxy, machine float64, err error) {
	before, mBefore := p.cpu(), bench.MachineCPU()
	err = f()
	return p.cpu() - before, bench.MachineCPU() - mBefore, err
}

// profileEwgw records ewgw CPU profiles from its pprof endpoint while the
// connection-rate and bulk-download tests run, into o.profileDir.
func profileEwgw(o options, p *path, client *tls.Config) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	runs := []struct {
		name string
		load func() error
	}{
		{"connrate", func() error { _, err := bench.ConnRate(p.addr, client, o.workers, time.Second); return err }},
		{"bulk-down", func() error { _, err := bench.Bulk(p.addr, client, 0, o.bulkBytes/4); return err }},
		{"bulk-up", func() error { _, err := bench.Bulk(p.addr, client, o.bulkBytes/4, 0); return err }},
	}
	for _, r := range runs {
		bench.WaitQuiet(o.maxBusy)
		file := filepath.Join(o.profileDir, "ewgw-"+r.name+".pprof")
		done := make(chan error, 1)
		go func() { done <- bench.FetchProfile(p.admin, o.profileFor, file) }()
		deadline := time.Now().Add(o.profileFor)
		for time.Now().Before(deadline) {
			if err := r.load(); err != nil {
				return fmt.Errorf("profile %s: %w", r.name, err)
			}
		}
		if err := <-done; err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", file)
	}
	return nil
}
