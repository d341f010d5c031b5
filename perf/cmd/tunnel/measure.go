package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// testNames lists the tests in the order they run.
var testNames = []string{"rtt", "ttfb", "down", "down8", "rate"}

// sample is one round's results for one path. The cpu arrays hold gateway
// A's and B's user+system seconds during that test (zero on direct).
type sample struct {
	rttP50, rttP99   time.Duration
	ttfbP50, ttfbP99 time.Duration
	down, down8      float64 // Gbit/s
	rate             float64 // connections/s
	conns            float64 // connections made in the rate test
	cpuDown          [2]float64
	cpuDown8         [2]float64
	cpuRate          [2]float64
	cpuIdle          [2]float64 // CPU fraction of one core with no client traffic
	busy             float64    // worst CPU fraction others used before a test
}

// idleFor is how long each gateway pair's CPU use is sampled with no
// client traffic, after it is ready.
const idleFor = 3 * time.Second

// measureAll runs the selected tests on every path, o.rounds times,
// rotating the path order each round, and returns the samples by path.
// Each tunnel's gateways are started fresh for its turn and stopped after.
func measureAll(o options, env *setup, paths []*path) (map[string][]sample, error) {
	res := map[string][]sample{}
	for r := range o.rounds {
		order := append(slices.Clone(paths[r%len(paths):]), paths[:r%len(paths)]...)
		for _, p := range order {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", r+1, p.name)
			s, err := measureFresh(o, env, p, o.testsFor(p, paths))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			res[p.name] = append(res[p.name], s)
		}
	}
	return res, nil
}

// measureFresh starts p, samples its idle CPU, runs tests on it and stops
// it.
func measureFresh(o options, env *setup, p *path, tests []string) (sample, error) {
	if err := p.start(o, env.dir, env.certs, env.backend, env.client); err != nil {
		return sample{}, err
	}
	defer p.stop()
	idle, _ := p.cpuDuring(func() error { time.Sleep(idleFor); return nil })
	s, err := measure(o, p, env.client, tests)
	for i := range idle {
		s.cpuIdle[i] = idle[i] / idleFor.Seconds()
	}
	if err != nil && p.gws != nil {
		err = fmt.Errorf("%w%s", err, p.logs())
	}
	return s, err
}

// testsFor returns the tests of p: all selected ones for direct and the
// first tunnel, the scaling ones for the other conns_per_peer settings.
func (o options) testsFor(p *path, paths []*path) []string {
	if len(paths) > 1 && p.connsPerPeer != 0 && p != paths[1] {
		return o.scaleTests
	}
	return o.tests
}

// measure runs each of tests once on p, each after the machine is quiet.
// Skipped tests leave their fields zero.
func measure(o options, p *path, client *tls.Config, tests []string) (sample, error) {
	var s sample
	run := map[string]func() error{
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
		"down": func() (err error) {
			s.cpuDown, err = p.cpuDuring(func() (err error) { s.down, err = bench.Bulk(p.addr, client, 0, o.bulkBytes); return })
			return err
		},
		"down8": func() (err error) {
			each := o.bulkBytes / int64(o.streams)
			s.cpuDown8, err = p.cpuDuring(func() (err error) {
				s.down8, err = bench.BulkParallel(p.addr, client, o.streams, 0, each)
				return
			})
			return err
		},
		"rate": func() (err error) {
			s.cpuRate, err = p.cpuDuring(func() (err error) { s.rate, err = bench.ConnRate(p.addr, client, o.workers, o.rateFor); return })
			s.conns = s.rate * o.rateFor.Seconds()
			return err
		},
	}
	for _, name := range testNames {
		if !slices.Contains(tests, name) {
			continue
		}
		s.busy = max(s.busy, bench.WaitQuiet(o.maxBusy, p.pids()...))
		if err := run[name](); err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s, nil
}

// cpuDuring returns the CPU seconds each gateway of p spent while f ran.
func (p *path) cpuDuring(f func() error) ([2]float64, error) {
	var before, after [2]float64
	for i, g := range p.gws {
		before[i] = g.cpu()
	}
	err := f()
	for i, g := range p.gws {
		after[i] = g.cpu() - before[i]
	}
	return after, err
}

// profileTunnel records CPU profiles of both gateways of p, at once, while
// the one-connection download, the warm round trips and the connection rate
// run, into o.profileDir as <gateway>-<test>.pprof.
func profileTunnel(o options, env *setup, p *path) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	if err := p.start(o, env.dir, env.certs, env.backend, env.client); err != nil {
		return err
	}
	defer p.stop()
	client := env.client
	runs := []struct {
		name string
		load func() error
	}{
		{"idle", func() error { time.Sleep(time.Second); return nil }},
		{"down", func() error { _, err := bench.Bulk(p.addr, client, 0, o.bulkBytes/4); return err }},
		{"rtt", func() error { _, err := bench.WarmRTT(p.addr, client, 64, 0, 5000, 0); return err }},
		{"rate", func() error { _, err := bench.ConnRate(p.addr, client, o.workers, time.Second); return err }},
	}
	for _, r := range runs {
		bench.WaitQuiet(o.maxBusy, p.pids()...)
		done := make(chan error, len(p.gws))
		for _, g := range p.gws {
			file := filepath.Join(o.profileDir, fmt.Sprintf("%s-%s.pprof", g.cluster, r.name))
			fetch := bench.FetchProfile
			if o.trace {
				file = strings.TrimSuffix(file, ".pprof") + ".trace"
				fetch = bench.FetchTrace
			}
			go func() { done <- fetch(g.admin, o.profileFor, file) }()
		}
		deadline := time.Now().Add(o.profileFor)
		for time.Now().Before(deadline) {
			if err := r.load(); err != nil {
				return fmt.Errorf("profile %s: %w", r.name, err)
			}
		}
		for range p.gws {
			if err := <-done; err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "wrote %s/{%s,%s}-%s.*\n", o.profileDir, clusterA, clusterB, r.name)
	}
	return nil
}
