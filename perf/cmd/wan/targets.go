package main

import (
	"fmt"
	"io"
	"time"
)

// Targets of the WAN benchmark.
const (
	targetTTFB     = 0.8  // ewgw's new-connection TTFB p50 against direct, at 20 and 80 ms
	targetWarm     = 1.05 // ewgw's warm p50 against direct at 20 ms
	targetDown     = 0.9  // ewgw's one-connection download against direct, 20 ms, 0 % loss
	targetHAProxy  = 1.0  // ewgw's download against the HAProxy chain, 20 ms, 1 % loss
	targetIdleKiB  = 32   // gateway memory per idle tunnelled connection
	targetLossRate = 0.01
)

// find returns path's sample at rtt and loss, if measured.
func (r *results) find(rtt time.Duration, loss float64, path string) (sample, bool) {
	s, ok := r.Samples[cell{RTT: rtt, Loss: loss}.String()][path]
	return s, ok
}

// printTargets checks ewgw against its targets.
func printTargets(w io.Writer, res *results) {
	fmt.Fprintln(w, "#### Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|")
	row := func(target, measured string, ok bool) {
		v := "met"
		if !ok {
			v = "**missed**"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", target, measured, v)
	}
	for _, rtt := range []time.Duration{20 * time.Millisecond, 80 * time.Millisecond} {
		for _, loss := range []float64{0, targetLossRate} {
			e, ok1 := res.find(rtt, loss, "ewgw")
			d, ok2 := res.find(rtt, loss, "direct")
			if ok1 && ok2 && d.TTFBP50 > 0 {
				r := float64(e.TTFBP50) / float64(d.TTFBP50)
				row(fmt.Sprintf("new-connection TTFB p50 ≤ %.1f× direct (RTT %s, loss %g%%)", targetTTFB, rtt, loss*100),
					fmt.Sprintf("%.2f× (%s vs %s)", r, ms(e.TTFBP50), ms(d.TTFBP50)), r <= targetTTFB)
			}
		}
	}
	rtt := 20 * time.Millisecond
	if e, ok := res.find(rtt, 0, "ewgw"); ok {
		d, _ := res.find(rtt, 0, "direct")
		if d.RTTP50 > 0 {
			r := float64(e.RTTP50) / float64(d.RTTP50)
			row(fmt.Sprintf("warm request p50 ≤ %.2f× direct (RTT 20ms)", targetWarm),
				fmt.Sprintf("%.3f× (%s vs %s)", r, ms(e.RTTP50), ms(d.RTTP50)), r <= targetWarm)
		}
		if d.Down > 0 {
			r := e.Down / d.Down
			row(fmt.Sprintf("one-connection download ≥ %.1f× direct (RTT 20ms, 0%% loss, %g Mbit/s link)", targetDown, res.Rate/1e6),
				fmt.Sprintf("%.2f× (%s vs %s)", r, mbit(e.Down), mbit(d.Down)), r >= targetDown)
		}
	}
	if e, ok := res.find(rtt, targetLossRate, "ewgw"); ok {
		h, _ := res.find(rtt, targetLossRate, "haproxy")
		for _, x := range []struct {
			what      string
			ewgw, hap float64
		}{{"one-connection", e.Down, h.Down}, {"8-connection", e.Down8, h.Down8}} {
			if x.hap > 0 {
				r := x.ewgw / x.hap
				row(fmt.Sprintf("%s download ≥ %.1f× the HAProxy chain (RTT 20ms, 1%% loss)", x.what, targetHAProxy),
					fmt.Sprintf("%.2f× (%s vs %s)", r, mbit(x.ewgw), mbit(x.hap)), r >= targetHAProxy)
			}
		}
	}
	for _, m := range res.Memory {
		if m.Path != "ewgw" || m.Err != "" {
			continue
		}
		for i, p := range m.Procs {
			kib := m.perConn(i)
			row(fmt.Sprintf("%s memory per idle tunnelled connection ≤ %d KiB (%d connections)", p, targetIdleKiB, m.Conns),
				fmt.Sprintf("%.1f KiB", kib), kib <= targetIdleKiB)
		}
	}
	fmt.Fprintln(w)
}
