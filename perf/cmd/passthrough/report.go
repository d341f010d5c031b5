package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// printReport writes the results, the ratios and the proxies' CPU cost as
// markdown tables, each value the median over rounds.
func printReport(w io.Writer, o options, paths []*path, res map[string][]sample) {
	fmt.Fprintf(w, "%s\n\n", bench.Machine())
	fmt.Fprintf(w, "Medians of %d rounds. Bulk: %d MiB one way on one TLS connection, CRC-32C checked. "+
		"Rate: %d workers for %s, each connection TCP + TLS 1.3 handshake + 64-byte echo. "+
		"Warm RTT: %d round trips of 64 bytes on one connection. TTFB: %d sequential new connections.\n\n",
		o.rounds, o.bulkBytes>>20, o.workers, o.rateFor, o.rtts, o.ttfbs)
	med := medians(paths, res)
	busy := 0.0
	for _, ss := range res {
		for _, s := range ss {
			busy = max(busy, s.busy)
		}
	}
	fmt.Fprintf(w, "Other processes' CPU use in the second before each test: at most %.0f%%.\n\n", busy*100)
	fmt.Fprintln(w, "| path | download Gbit/s | upload Gbit/s | new conns/s | warm RTT p50 | warm RTT p99 | TTFB p50 | TTFB p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range paths {
		s := med[p.name]
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.0f | %s | %s | %s | %s |\n", p.name, s.down, s.up, s.rate,
			bench.Micros(s.rttP50), bench.Micros(s.rttP99), bench.Micros(s.ttfbP50), bench.Micros(s.ttfbP99))
	}
	printRatios(w, paths, med)
	printRounds(w, paths, res)
	cpuTables(w, paths, med, float64(o.bulkBytes)/(1<<30))
}

// cpuTables writes the proxies' and the whole machine's CPU medians, for
// bulk transfers of gib GiB.
func cpuTables(w io.Writer, paths []*path, med map[string]sample, gib float64) {
	cpuTable(w, "Proxy CPU (user+system, all threads and workers):", paths, med, gib, false,
		func(s sample) (float64, float64, float64) { return s.cpuDown, s.cpuUp, s.cpuPerConn })
	cpuTable(w, "Whole machine (client, backend and proxy, softirq included; /proc/stat busy time):", paths, med, gib, true,
		func(s sample) (float64, float64, float64) { return s.sysDown, s.sysUp, s.sysPerConn })
}

// cpuTable writes CPU seconds per GiB each way and µs per connection, one
// row per path; the direct path only if withDirect. of picks a sample's
// CPU seconds down and up and its seconds per connection.
func cpuTable(w io.Writer, title string, paths []*path, med map[string]sample, gib float64, withDirect bool,
	of func(sample) (down, up, perConn float64)) {
	fmt.Fprintf(w, "\n%s\n\n", title)
	fmt.Fprintln(w, "| path | CPU s per GiB down | CPU s per GiB up | CPU µs per connection |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, p := range paths {
		if p.name == "direct" && !withDirect {
			continue
		}
		down, up, perConn := of(med[p.name])
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.0f |\n", p.name, down/gib, up/gib, perConn*1e6)
	}
}

// printRatios writes each proxy's results against direct and HAProxy:
// throughput and rate as ratios, latency as time added.
func printRatios(w io.Writer, paths []*path, med map[string]sample) {
	fmt.Fprintln(w, "\n| path | vs | download | upload | new conns/s | added RTT p50 | added RTT p99 | added TTFB p50 | added TTFB p99 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, base := range []string{"direct", "haproxy"} {
		b, ok := med[base]
		if !ok {
			continue
		}
		for _, p := range paths {
			if p.name == base || p.name == "direct" {
				continue
			}
			s := med[p.name]
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.name, base,
				bench.Ratio(s.down, b.down), bench.Ratio(s.up, b.up), bench.Ratio(s.rate, b.rate),
				bench.Added(s.rttP50, b.rttP50), bench.Added(s.rttP99, b.rttP99), bench.Added(s.ttfbP50, b.ttfbP50), bench.Added(s.ttfbP99, b.ttfbP99))
		}
	}
}

// printRounds writes each proxy's throughput and rate against direct, HAProxy
// and nginx round by round: the median of the rounds' ratios, their range,
// and how many rounds reach the target (0.9× direct, 1.0× a proxy). A round
// measures every path back to back, so its ratio compares samples taken
// minutes apart at most, where the medians above may mix a fast round of
// one path with a slow one of another.
func printRounds(w io.Writer, paths []*path, res map[string][]sample) {
	fmt.Fprintln(w, "\nRatios round by round: median [95 % confidence interval of that median; none under 6 rounds] "+
		"(lowest–highest), rounds at or above the target (0.9× direct, 1.0× a proxy):")
	fmt.Fprintln(w, "\n| path | vs | download | upload | new conns/s |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fields := []func(sample) float64{
		func(s sample) float64 { return s.down },
		func(s sample) float64 { return s.up },
		func(s sample) float64 { return s.rate },
	}
	for _, base := range []string{"direct", "haproxy", "nginx"} {
		bs, ok := res[base]
		if !ok {
			continue
		}
		target := 1.0
		if base == "direct" {
			target = 0.9
		}
		for _, p := range paths {
			if p.name == base || p.name == "direct" {
				continue
			}
			cells := make([]string, len(fields))
			for i, f := range fields {
				cells[i] = roundRatios(res[p.name], bs, f, target)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", p.name, base, cells[0], cells[1], cells[2])
		}
	}
}

// roundRatios formats the per-round ratios of field in ss against base.
func roundRatios(ss, base []sample, field func(sample) float64, target float64) string {
	var v []float64
	for r := range min(len(ss), len(base)) {
		if a, b := field(ss[r]), field(base[r]); a > 0 && b > 0 {
			v = append(v, a/b)
		}
	}
	if len(v) == 0 {
		return "–"
	}
	n := 0
	for _, x := range v {
		if x >= target {
			n++
		}
	}
	ci := ""
	if lo, hi, ok := bench.MedianInterval(v, 0.95); ok {
		ci = fmt.Sprintf(" [%.2f–%.2f]", lo, hi)
	}
	return fmt.Sprintf("%.2f×%s (%.2f–%.2f), %d/%d", bench.Median(v), ci, slices.Min(v), slices.Max(v), n, len(v))
}

// medians returns each path's median sample.
func medians(paths []*path, res map[string][]sample) map[string]sample {
	med := map[string]sample{}
	for _, p := range paths {
		med[p.name] = median(res[p.name])
	}
	return med
}

// median returns, field by field, the median of ss.
func median(ss []sample) sample {
	f := func(get func(sample) float64) float64 { return bench.MedianOf(ss, get) }
	d := func(get func(sample) time.Duration) time.Duration {
		return time.Duration(f(func(s sample) float64 { return float64(get(s)) }))
	}
	return sample{
		down:       f(func(s sample) float64 { return s.down }),
		up:         f(func(s sample) float64 { return s.up }),
		rate:       f(func(s sample) float64 { return s.rate }),
		rttP50:     d(func(s sample) time.Duration { return s.rttP50 }),
		rttP99:     d(func(s sample) time.Duration { return s.rttP99 }),
		ttfbP50:    d(func(s sample) time.Duration { return s.ttfbP50 }),
		ttfbP99:    d(func(s sample) time.Duration { return s.ttfbP99 }),
		cpuDown:    f(func(s sample) float64 { return s.cpuDown }),
		cpuUp:      f(func(s sample) float64 { return s.cpuUp }),
		cpuRate:    f(func(s sample) float64 { return s.cpuRate }),
		cpuPerConn: f(func(s sample) float64 { return s.cpuPerConn }),
		sysDown:    f(func(s sample) float64 { return s.sysDown }),
		sysUp:      f(func(s sample) float64 { return s.sysUp }),
		sysPerConn: f(func(s sample) float64 { return s.sysPerConn }),
		busy:       f(func(s sample) float64 { return s.busy }),
	}
}
