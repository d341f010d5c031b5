package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// attack is one scenario's attacker. prepare, if set, runs before the
// gateways start (work that must not land in the measurement); run attacks
// until ctx ends and notes what it saw in r. For a flood, a second replica
// of A is started during the attack to see whether a new peer can connect.
type attack struct {
	prepare func(e *setup) error
	run     func(ctx context.Context, e *setup, victim *gateway, r *result) error
	flood   bool
}

var attacks = map[string]*attack{
	"catalogue":  {run: catalogueFlood(maxConnsIn)},
	"catalogue1": {run: catalogueFlood(1)},
	"streams":    {run: streamFlood},
	"conns":      {run: connFlood},
	"claims":     {run: claims},
	"initial":    {prepare: prepareInitials, run: initialFlood, flood: true},
	"hello":      {run: helloFlood(20), flood: true},
	"hello1":     {run: helloFlood(1), flood: true},
}

// result is what one scenario measured.
type result struct {
	name           string
	before, during map[string]stats // by probe: "peer" (A → B → backend), "client" (→ B → backend)
	rssBefore      int64            // the victim's VmRSS after the quiet baseline
	hwm            int64            // its VmHWM at the end of the attack
	cpu            float64          // its CPU seconds per second during the attack
	selfCPU        float64          // this process's (attacker and probes) during the attack
	connectBefore  time.Duration    // a new replica of A: start to first call through it
	connectDuring  time.Duration
	connectErr     string
	attacker       []string // what the attacker saw
	victim         []string // the victim's counters after the attack
	busy           float64  // other processes' share of the CPUs before the baseline
	mu             sync.Mutex
}

func (r *result) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attacker = append(r.attacker, fmt.Sprintf(format, args...))
}

// scenario starts the victim and the good peer, measures the quiet
// baseline, then the attack, and stops both.
func (e *setup) scenario(name string) (*result, error) {
	a := attacks[name]
	if a.prepare != nil {
		if err := a.prepare(e); err != nil {
			return nil, err
		}
	}
	victim, err := e.startVictim()
	if err != nil {
		return nil, err
	}
	defer victim.stop()
	peer, err := e.startPeer(victim)
	if err != nil {
		return nil, err
	}
	defer peer.stop()
	if err := bench.WaitReady(peer.addr, e.client, 20*time.Second); err != nil {
		return nil, fmt.Errorf("peer not ready: %w%s%s", err, peer.logTail(), victim.logTail())
	}
	r := &result{name: name}
	probes := map[string]string{"peer": peer.addr, "client": victim.addr}
	r.busy = bench.WaitQuietFor(0.5, 10*time.Second, victim.pid(), peer.pid())
	ctx, cancel := context.WithTimeout(context.Background(), e.o.quiet)
	r.before = runProbes(ctx, probes, e)
	cancel()
	r.rssBefore = vm(victim.pid(), "VmRSS")
	if a.flood {
		r.connectBefore, err = e.connectTime(victim)
		if err != nil {
			return nil, fmt.Errorf("a new peer before the attack: %w", err)
		}
	}

	ctx, cancel = context.WithTimeout(context.Background(), e.o.phase)
	defer cancel()
	cpu0, self0, t0 := bench.CPU(victim.pid()), selfCPU(), time.Now()
	var wg sync.WaitGroup
	var attackErr, profileErr error
	if e.o.profile != "" {
		file := filepath.Join(e.o.profile, name+".pprof")
		wg.Go(func() { profileErr = bench.FetchProfile(victim.admin, e.o.phase-time.Second, file) })
	}
	wg.Go(func() { attackErr = a.run(ctx, e, victim, r) })
	if a.flood {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.o.phase / 3):
			}
			var err error
			if r.connectDuring, err = e.connectTime(victim); err != nil {
				r.connectErr = err.Error()
			}
		})
	}
	r.during = runProbes(ctx, probes, e)
	wg.Wait()
	r.cpu = (bench.CPU(victim.pid()) - cpu0) / time.Since(t0).Seconds()
	r.selfCPU = (selfCPU() - self0) / time.Since(t0).Seconds()
	r.hwm = vm(victim.pid(), "VmHWM")
	r.victim = counters(victim.admin)
	if attackErr != nil {
		return nil, fmt.Errorf("attack: %w%s", attackErr, victim.logTail())
	}
	if profileErr != nil {
		return nil, fmt.Errorf("victim profile: %w", profileErr)
	}
	return r, nil
}

// connectTime starts a second replica of A, times its start to the first
// call through it (its QUIC handshakes, hellos and catalogue included),
// and stops it.
func (e *setup) connectTime(victim *gateway) (time.Duration, error) {
	start := time.Now()
	g, err := e.startPeer(victim)
	if err != nil {
		return 0, err
	}
	defer g.stop()
	if err := bench.WaitReady(g.addr, e.client, 15*time.Second); err != nil {
		return 0, fmt.Errorf("%w%s", err, g.logTail())
	}
	return time.Since(start), nil
}

// stats summarizes one probe's calls.
type stats struct {
	ok, failed int
	p50, p99   time.Duration
	firstErr   string
}

// runProbes makes sequential calls (a new TLS connection and a 64-byte
// echo) to each address until ctx ends, pausing e.o.interval between two.
func runProbes(ctx context.Context, addrs map[string]string, e *setup) map[string]stats {
	out := map[string]stats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, addr := range addrs {
		wg.Go(func() {
			s := probe(ctx, addr, e)
			mu.Lock()
			out[name] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func probe(ctx context.Context, addr string, e *setup) stats {
	var s stats
	var lat []time.Duration
	msg := make([]byte, 64)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		d, err := bench.NewConnRoundTrip(cctx, addr, e.client, msg)
		cancel()
		if err != nil {
			s.failed++
			if s.firstErr == "" {
				s.firstErr = err.Error()
			}
		} else {
			lat = append(lat, d)
		}
		select {
		case <-ctx.Done():
		case <-time.After(e.o.interval):
		}
	}
	s.ok = len(lat)
	if len(lat) > 0 {
		s.p50, s.p99 = bench.P50P99(lat)
	}
	return s
}

// counterPrefixes are the victim's metrics the report shows.
var counterPrefixes = []string{
	"ewgw_tunnel_peer_refusals_total", "ewgw_tunnel_streams_accepted_total",
	"ewgw_tunnel_handshakes_refused_total", "ewgw_tunnel_handshake_failures_total",
	"ewgw_tunnel_retries_total", "ewgw_tunnel_control_messages_received_total",
	"ewgw_proxy_connections_total",
}

// counters returns the victim's nonzero counters of counterPrefixes, as
// "name{labels} value" lines.
func counters(admin string) []string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return []string{"metrics: " + err.Error()}
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || !slices.ContainsFunc(counterPrefixes, func(p string) bool { return strings.HasPrefix(l, p) }) {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil && v != 0 {
			out = append(out, fmt.Sprintf("%s %.0f", l[:i], v))
		}
	}
	return out
}

// selfCPU returns this process's user and system CPU seconds, without its
// children (the gateways and the backend).
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
