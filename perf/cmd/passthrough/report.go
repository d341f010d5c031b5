package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
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
	med := map[string]sample{}
	for _, p := range paths {
		med[p.name] = median(res[p.name])
	}
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
	gib := float64(o.bulkBytes) / (1 << 30)
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
		if p.cmd == nil && !withDirect {
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
	fmt.Fprintln(w, "\nRatios round by round: median (lowest–highest), rounds at or above the target (0.9× direct, 1.0× a proxy):")
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
	return fmt.Sprintf("%.2f× (%.2f–%.2f), %d/%d", bench.Median(v), slices.Min(v), slices.Max(v), n, len(v))
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

// samplesHeader names writeSamples's columns: Gbit/s, connections/s,
// microseconds, CPU seconds per GiB or microseconds per connection (the
// proxy's empty on the direct path), and the busiest CPU fraction other
// processes used before a test.
var samplesHeader = []string{
	"round", "path", "down_gbps", "up_gbps", "conns_per_s",
	"rtt_p50_us", "rtt_p99_us", "ttfb_p50_us", "ttfb_p99_us",
	"proxy_cpu_s_per_gib_down", "proxy_cpu_s_per_gib_up", "proxy_cpu_us_per_conn",
	"machine_cpu_s_per_gib_down", "machine_cpu_s_per_gib_up", "machine_cpu_us_per_conn",
	"others_busy",
}

// writeSamples writes every round's sample of every path to file as CSV,
// one row per round and path, so that several runs can be pooled.
func writeSamples(file string, paths []*path, res map[string][]sample, bulkGiB float64) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(samplesHeader)
	us := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, p := range paths {
		for r, s := range res[p.name] {
			proxy := []string{"", "", ""} // the direct path has no proxy
			if p.cmd != nil {
				proxy = []string{num(s.cpuDown / bulkGiB), num(s.cpuUp / bulkGiB), num(s.cpuPerConn * 1e6)}
			}
			row := []string{strconv.Itoa(r + 1), p.name, num(s.down), num(s.up), num(s.rate),
				us(s.rttP50), us(s.rttP99), us(s.ttfbP50), us(s.ttfbP99)}
			row = append(append(row, proxy...),
				num(s.sysDown/bulkGiB), num(s.sysUp/bulkGiB), num(s.sysPerConn*1e6), num(s.busy))
			_ = w.Write(row)
		}
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}
