package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
	"github.com/ewgw/ewgw/perf/wan"
)

// writeReport writes results.md, results.json and the plots into o.out,
// and results.md to stdout too.
func writeReport(o options, res *results) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), b, 0o644); err != nil {
		return err
	}
	plots, err := writePlots(o.out, res)
	if err != nil {
		return err
	}
	var sb strings.Builder
	printReport(&sb, o, res, plots)
	_, _ = os.Stdout.WriteString(sb.String())
	return os.WriteFile(filepath.Join(o.out, "results.md"), []byte(sb.String()), 0o644)
}

// replot draws the plots of the results in file into dir.
func replot(file, dir string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names, err := writePlots(dir, &res)
	for _, n := range names {
		fmt.Println(filepath.Join(dir, n))
	}
	return err
}

// printReport writes the tables: every figure by cell and path, the ratios
// against direct, the emulator's own counters, memory, and the targets.
func printReport(w io.Writer, o options, res *results, plots []string) {
	fmt.Fprintf(w, "%s; run started %s.\n\n", res.Machine, res.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "Link: %g Mbit/s each way, drop-tail queue of one BDP (at least 4 ms), loss per direction, TCP %s in both namespaces. "+
		"TTFB: up to %d sequential new connections (at most %s): TCP + TLS 1.3 handshake + 64-byte echo, from the dial to the first response byte. "+
		"Warm RTT: up to %d round trips of 64 bytes on one TLS connection (at most %s). "+
		"Download: %s on one connection and on %d at once (payload Gbit/s from the first dial to the last byte). "+
		"Rate: %d workers making new connections for %s.\n\n",
		res.Rate/1e6, o.cc, o.ttfbs, o.ttfbFor, o.rttN, o.rttFor, o.bulkFor, o.streams, o.workers, o.rateFor)
	busy := 0.0
	for _, byPath := range res.Samples {
		for _, s := range byPath {
			busy = max(busy, s.Busy)
		}
	}
	fmt.Fprintf(w, "Other processes' CPU use in the second before each test: at most %.0f%%.\n\n", busy*100)
	for _, c := range res.Cells {
		printCell(w, res, c)
	}
	printRatios(w, res)
	printEmulator(w, res)
	printProcCPU(w, res)
	printRamp(w, res)
	printMemory(w, res)
	printTargets(w, res)
	printErrors(w, res)
	for _, p := range plots {
		fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
	}
}

// printCell writes every path's figures in cell c.
func printCell(w io.Writer, res *results, c cell) {
	fmt.Fprintf(w, "#### %s\n\n", c)
	fmt.Fprintln(w, "| path | TTFB p50 | TTFB p99 | warm RTT p50 | warm RTT p99 | warm beside a download, p50 | p99 | download, 1 conn | download, 8 conns | new conns/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range res.Paths {
		s := res.get(c, p)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f |\n", p, ms(s.TTFBP50), ms(s.TTFBP99),
			ms(s.RTTP50), ms(s.RTTP99), ms(s.LoadedP50), ms(s.LoadedP99), mbit(s.Down), mbit(s.Down8), s.Rate)
	}
	fmt.Fprintln(w)
}

// ratioBases are the paths each path is compared with beyond direct: the
// gateways with the HAProxy chain, and the TCP transport with QUIC.
var ratioBases = map[string][]string{
	"ewgw":       {"haproxy"},
	"ewgw-tcp":   {"haproxy", "ewgw"},
	"ewgw-noudp": {"ewgw-tcp"},
}

// printRatios writes each proxied path against direct in every cell, and
// the gateway paths against HAProxy and the TCP transport against QUIC.
func printRatios(w io.Writer, res *results) {
	fmt.Fprintln(w, "#### Against direct (ratios of the figures above; < 1 is faster for latency, slower for throughput and rate)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | path | vs | TTFB p50 | TTFB p99 | warm p50 | warm p99 | beside a download p50 | p99 | download, 1 conn | download, 8 conns | new conns/s |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range res.Cells {
		for _, p := range res.Paths {
			if p == "direct" {
				continue
			}
			for _, base := range append([]string{"direct"}, ratioBases[p]...) {
				if b, ok := res.Samples[c.String()][base]; ok {
					printRatio(w, c, p, base, res.get(c, p), b)
				}
			}
		}
	}
	fmt.Fprintln(w)
}

// printRatio writes one row of printRatios: s of path against b of base.
func printRatio(w io.Writer, c cell, path, base string, s, b sample) {
	d := func(v, base time.Duration) string { return bench.Ratio(float64(v), float64(base)) }
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, path, base,
		d(s.TTFBP50, b.TTFBP50), d(s.TTFBP99, b.TTFBP99), d(s.RTTP50, b.RTTP50), d(s.RTTP99, b.RTTP99),
		d(s.LoadedP50, b.LoadedP50), d(s.LoadedP99, b.LoadedP99),
		bench.Ratio(s.Down, b.Down), bench.Ratio(s.Down8, b.Down8), bench.Ratio(s.Rate, b.Rate))
}

// printEmulator writes what the emulator did during the downloads, so a
// reader can tell whether it, rather than the path, set the pace.
func printEmulator(w io.Writer, res *results) {
	fmt.Fprintln(w, "#### The emulator during the downloads (server → client direction)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Lost: the configured random loss. Tail drops: the bottleneck queue was full (the path sent faster than the link). "+
		"No buffer, device drops and late writes are the emulator's own shortfalls.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | path | conns | packets | lost | tail drops | no buffer | device drops | written >1 ms late | max queue | forwarder CPU |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range res.Cells {
		for _, p := range res.Paths {
			s := res.get(c, p)
			for i, rep := range []wan.Report{s.LinkDown, s.LinkDown8} {
				st := rep.BA
				if st.Packets == 0 {
					continue
				}
				fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %.2f %% | %d KB | %.0f %% of a core |\n", c, p, []int{1, res.Streams}[i],
					st.Packets, st.Lost, st.TailDrops, st.NoBuffer, rep.DeviceDrop,
					100*float64(st.Late)/float64(st.Packets), st.MaxQueue/1000, 100*rep.CPU/res.BulkFor.Seconds())
			}
		}
	}
	fmt.Fprintln(w)
}

// printProcCPU writes how busy each proxy process was during the
// downloads (a process far from a full core did not set the pace), and
// what the path's processes spent per gigabyte carried.
func printProcCPU(w io.Writer, res *results) {
	fmt.Fprintln(w, "#### Proxy CPU during the downloads (user+system: % of one core, A side / B side; CPU seconds per GB of payload, both sides together)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | path | 1 connection | 8 connections | s/GB, 1 connection | s/GB, 8 connections |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	cores := func(cpu []float64) string {
		var parts []string
		for _, c := range cpu {
			parts = append(parts, fmt.Sprintf("%.0f %%", 100*c/res.BulkFor.Seconds()))
		}
		return strings.Join(parts, " / ")
	}
	for _, c := range res.Cells {
		for _, p := range res.Paths {
			if s := res.get(c, p); len(s.CPUDown) > 0 {
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", c, p, cores(s.CPUDown), cores(s.CPUDown8),
					perGB(s.CPUDown, s.Down, res.BulkFor), perGB(s.CPUDown8, s.Down8, res.BulkFor))
			}
		}
	}
	fmt.Fprintln(w)
}

// perGB is the CPU seconds of cpu (every process's) per GB (10^9 bytes)
// of a download at gbits Gbit/s for d; the download's bytes are its rate
// times d, which its last byte ends within a round trip of.
func perGB(cpu []float64, gbits float64, d time.Duration) string {
	gb := gbits / 8 * d.Seconds()
	if gb == 0 {
		return "–"
	}
	sum := 0.0
	for _, c := range cpu {
		sum += c
	}
	return fmt.Sprintf("%.2f s", sum/gb)
}

// printRamp writes the one-connection download's rate over time in the
// ramp cell, in 5-second windows.
func printRamp(w io.Writer, res *results) {
	for _, c := range res.Cells {
		if len(res.get(c, res.Paths[0]).Ramp) == 0 {
			continue
		}
		n := len(res.get(c, res.Paths[0]).Ramp)
		fmt.Fprintf(w, "#### One download over time (%s): mean Mbit/s in each 5 s window\n\n", c)
		fmt.Fprint(w, "| path |")
		for t := 0; t < n; t += 5 {
			fmt.Fprintf(w, " %d–%d s |", t, min(t+5, n))
		}
		fmt.Fprint(w, "\n|---|")
		for t := 0; t < n; t += 5 {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprintln(w)
		for _, p := range res.Paths {
			r := res.get(c, p).Ramp
			fmt.Fprintf(w, "| %s |", p)
			for t := 0; t < n; t += 5 {
				win := r[min(t, len(r)):min(t+5, len(r))]
				sum := 0.0
				for _, v := range win {
					sum += v
				}
				fmt.Fprintf(w, " %.0f |", sum/float64(max(1, len(win))))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// printMemory writes the memory per idle connection of each process.
func printMemory(w io.Writer, res *results) {
	if len(res.Memory) == 0 {
		return
	}
	fmt.Fprintln(w, "#### Memory per idle connection")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "VmRSS of each process (with its worker processes) before and after the connections were opened (TLS handshake done, then idle), fresh processes.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path | connections | process | RSS before | RSS after | per connection |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|")
	for _, m := range res.Memory {
		if m.Err != "" {
			fmt.Fprintf(w, "| %s | %d | – | – | – | failed: %s |\n", m.Path, m.Conns, m.Err)
			continue
		}
		for i, proc := range m.Procs {
			fmt.Fprintf(w, "| %s | %d | %s | %.1f MiB | %.1f MiB | %.1f KiB |\n", m.Path, m.Conns, proc,
				float64(m.Before[i])/(1<<20), float64(m.After[i])/(1<<20), m.perConn(i))
		}
	}
	fmt.Fprintln(w)
}

// printErrors lists the tests that failed.
func printErrors(w io.Writer, res *results) {
	for _, c := range res.Cells {
		for _, p := range res.Paths {
			for _, e := range res.get(c, p).Errors {
				fmt.Fprintf(w, "- failed: %s, %s: %s\n", c, p, e)
			}
		}
	}
	fmt.Fprintln(w)
}

// ms formats d in milliseconds, "–" if a test was skipped.
func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/1e6)
}

// mbit formats Gbit/s g as Mbit/s.
func mbit(g float64) string {
	if g == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f Mbit/s", g*1e3)
}
