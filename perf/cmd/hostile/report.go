package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// printReport writes the markdown tables: memory, CPU and the honest
// calls' latency per attack, new-peer connect times under the floods, then
// what each attacker saw and the victim's counters.
func printReport(w io.Writer, o options, rs []*result) {
	fmt.Fprintf(w, "Each attack: %s against fresh gateways after a %s quiet baseline; probes: one call (new TLS connection, 64-byte echo) every %s,\n", o.phase, o.quiet, o.interval)
	fmt.Fprintf(w, "`peer`: client → A → QUIC → B (the victim) → backend; `client`: client → B → backend. Bound: VmHWM ≤ %d MiB; peer p50 ≤ 2× its baseline.\n\n", o.rssBound>>20)
	fmt.Fprintln(w, "| attack | victim VmHWM | VmRSS before | victim CPU during | attacker and probes' CPU | peer p50 before → during | ×  | peer p99 during | peer calls failed | client p50 before → during | client calls failed | others' CPU before | bounds |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		pb, pd := r.before["peer"], r.during["peer"]
		cb, cd := r.before["client"], r.during["client"]
		ratio := float64(pd.p50) / float64(max(pb.p50, 1))
		verdict := "met"
		if r.hwm > o.rssBound {
			verdict = "**RSS missed**"
		}
		if ratio > 2 || pd.ok == 0 {
			verdict += ", **p50 missed**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f %% | %.0f %% | %s → %s | %.2f | %s | %s | %s → %s | %s | %.0f %% | %s |\n",
			r.name, mib(r.hwm), mib(r.rssBefore), r.cpu*100, r.selfCPU*100, bench.Micros(pb.p50), bench.Micros(pd.p50), ratio,
			bench.Micros(pd.p99), failed(pd), bench.Micros(cb.p50), bench.Micros(cd.p50), failed(cd), r.busy*100, verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| flood | a new peer replica: start → first call, before | during |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range rs {
		if r.connectBefore == 0 {
			continue
		}
		during := ms(r.connectDuring)
		if r.connectErr != "" {
			during = "failed: " + r.connectErr
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.name, ms(r.connectBefore), during)
	}
	for _, r := range rs {
		fmt.Fprintf(w, "\n**%s**\n\n", r.name)
		for _, n := range r.attacker {
			fmt.Fprintf(w, "- %s\n", n)
		}
		for _, p := range []string{"peer", "client"} {
			if s := r.during[p]; s.firstErr != "" {
				fmt.Fprintf(w, "- %s probe's first failure during the attack: %s\n", p, s.firstErr)
			}
		}
		fmt.Fprintln(w, "- victim counters after the attack:")
		for _, c := range r.victim {
			fmt.Fprintf(w, "  - `%s`\n", c)
		}
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

func failed(s stats) string { return fmt.Sprintf("%d of %d", s.failed, s.ok+s.failed) }
