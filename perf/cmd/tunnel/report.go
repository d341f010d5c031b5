package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// Targets of the tunnel benchmark, on loopback.
const (
	targetAddedRTT = 130 * time.Microsecond // the two hops' addition to the warm p50
	targetGbits    = 1.0                    // one tunnelled connection
)

// printReport writes the results as markdown tables, each value the median
// over rounds: direct against the first tunnel, the conns_per_peer scaling,
// the gateways' CPU cost, and the targets.
func printReport(w io.Writer, o options, paths []*path, res map[string][]sample) {
	fmt.Fprintf(w, "%s\n\n", bench.Machine())
	fmt.Fprintf(w, "Medians of %d rounds. Warm RTT: %d round trips of 64 bytes on one TLS connection. "+
		"TTFB: %d sequential new connections (TCP + TLS 1.3 handshake + 64-byte echo). "+
		"Download: %d MiB on one connection, and split over %d concurrent connections, SHA-256 checked. "+
		"Rate: %d workers for %s. tunnel/N is client → gateway A → QUIC (conns_per_peer N) → gateway B → server.\n\n",
		o.rounds, o.rtts, o.ttfbs, o.bulkBytes>>20, o.streams, o.workers, o.rateFor)
	busy := 0.0
	for _, ss := range res {
		for _, s := range ss {
			busy = max(busy, s.busy)
		}
	}
	fmt.Fprintf(w, "Other processes' CPU use in the second before each test: at most %.0f%%.\n\n", busy*100)
	med := map[string]sample{}
	for _, p := range paths {
		med[p.name] = median(res[p.name])
	}
	d := med["direct"]
	fmt.Fprintln(w, "| path | warm RTT p50 | warm RTT p99 | TTFB p50 | TTFB p99 | download, 1 conn | download, 8 conns | new conns/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	main := paths[:min(2, len(paths))]
	for _, p := range main {
		s := med[p.name]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.2f Gbit/s | %.2f Gbit/s | %.0f |\n", p.name,
			bench.Micros(s.rttP50), bench.Micros(s.rttP99), bench.Micros(s.ttfbP50), bench.Micros(s.ttfbP99), s.down, s.down8, s.rate)
	}
	for _, p := range main[1:] {
		s := med[p.name]
		fmt.Fprintf(w, "| %s vs direct | %s | %s | %s | %s | %s | %s | %s |\n", p.name,
			bench.Added(s.rttP50, d.rttP50), bench.Added(s.rttP99, d.rttP99), bench.Added(s.ttfbP50, d.ttfbP50), bench.Added(s.ttfbP99, d.ttfbP99),
			bench.Ratio(s.down, d.down), bench.Ratio(s.down8, d.down8), bench.Ratio(s.rate, d.rate))
	}
	printScaling(w, o, paths, med)
	printTargets(w, paths, med)
}

// printScaling writes download throughput by conns_per_peer, and the
// gigabits each gateway moved per CPU second it used.
func printScaling(w io.Writer, o options, paths []*path, med map[string]sample) {
	gbit := float64(o.bulkBytes) * 8 / 1e9
	perCore := func(cpu float64) string {
		if cpu <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", gbit/cpu)
	}
	d := med["direct"]
	fmt.Fprintln(w, "\nScaling with conns_per_peer (gateway CPU: user+system of each `ewgw run` process from /proc during the test):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| conns_per_peer | download, 1 conn | download, 8 conns | 8 conns vs direct | Gbit per CPU-s, A / B (1 conn) | Gbit per CPU-s, A / B (8 conns) | gateway cores busy, A + B (8 conns) |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range paths[1:] {
		s := med[p.name]
		wall := gbit / s.down8
		fmt.Fprintf(w, "| %d | %.2f Gbit/s | %.2f Gbit/s | %s | %s / %s | %s / %s | %.2f + %.2f |\n", p.connsPerPeer,
			s.down, s.down8, bench.Ratio(s.down8, d.down8),
			perCore(s.cpuDown[0]), perCore(s.cpuDown[1]), perCore(s.cpuDown8[0]), perCore(s.cpuDown8[1]),
			s.cpuDown8[0]/wall, s.cpuDown8[1]/wall)
	}
	fmt.Fprintln(w)
	for _, p := range paths[1:] {
		s := med[p.name]
		fmt.Fprintf(w, "Gateway CPU with no client traffic (%s, %s after ready): A %.0f %%, B %.0f %% of a core.\n",
			p.name, idleFor, s.cpuIdle[0]*100, s.cpuIdle[1]*100)
	}
	if len(paths) > 1 {
		if s := med[paths[1].name]; s.conns > 0 {
			fmt.Fprintf(w, "\nGateway CPU per new connection (%s, rate test): A %.0f µs, B %.0f µs.\n",
				paths[1].name, s.cpuRate[0]/s.conns*1e6, s.cpuRate[1]/s.conns*1e6)
		}
	}
}

// printTargets checks the first tunnel against its targets.
func printTargets(w io.Writer, paths []*path, med map[string]sample) {
	if len(paths) < 2 {
		return
	}
	d, s := med["direct"], med[paths[1].name]
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	added := s.rttP50 - d.rttP50
	fmt.Fprintln(w, "\n| target (loopback) | result |")
	fmt.Fprintln(w, "|---|---|")
	if s.rttP50 > 0 {
		fmt.Fprintf(w, "| two gateway hops add ≤ %s to the warm p50 | +%s (%s) — %s |\n",
			bench.Micros(targetAddedRTT), bench.Micros(added), paths[1].name, verdict(added <= targetAddedRTT))
	}
	best := 0.0
	for _, p := range paths[1:] {
		best = max(best, med[p.name].down)
	}
	if best > 0 {
		fmt.Fprintf(w, "| one tunnel connection ≥ %.1f Gbit/s | %.2f Gbit/s (%s), best %.2f — %s |\n",
			targetGbits, s.down, paths[1].name, best, verdict(s.down >= targetGbits))
	}
}

// median returns, field by field, the median of ss.
func median(ss []sample) sample {
	f := func(get func(sample) float64) float64 { return bench.MedianOf(ss, get) }
	dur := func(get func(sample) time.Duration) time.Duration {
		return time.Duration(f(func(s sample) float64 { return float64(get(s)) }))
	}
	pair := func(get func(sample) [2]float64) [2]float64 {
		return [2]float64{f(func(s sample) float64 { return get(s)[0] }), f(func(s sample) float64 { return get(s)[1] })}
	}
	return sample{
		rttP50:   dur(func(s sample) time.Duration { return s.rttP50 }),
		rttP99:   dur(func(s sample) time.Duration { return s.rttP99 }),
		ttfbP50:  dur(func(s sample) time.Duration { return s.ttfbP50 }),
		ttfbP99:  dur(func(s sample) time.Duration { return s.ttfbP99 }),
		down:     f(func(s sample) float64 { return s.down }),
		down8:    f(func(s sample) float64 { return s.down8 }),
		rate:     f(func(s sample) float64 { return s.rate }),
		conns:    f(func(s sample) float64 { return s.conns }),
		cpuDown:  pair(func(s sample) [2]float64 { return s.cpuDown }),
		cpuDown8: pair(func(s sample) [2]float64 { return s.cpuDown8 }),
		cpuRate:  pair(func(s sample) [2]float64 { return s.cpuRate }),
		cpuIdle:  pair(func(s sample) [2]float64 { return s.cpuIdle }),
		busy:     f(func(s sample) float64 { return s.busy }),
	}
}
