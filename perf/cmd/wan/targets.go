package main

import (
	"fmt"
	"io"
	"time"
)

// Targets of the WAN benchmark.
const (
	targetTTFB     = 0.8  // a gateway path's new-connection TTFB p50 against direct, at 20 and 80 ms
	targetWarm     = 1.05 // a gateway path's warm p50 against direct at 20 ms
	targetDown     = 0.9  // a gateway path's one-connection download against direct, 20 ms, 0 % loss
	targetHAProxy  = 1.0  // ewgw's (QUIC's) download against the HAProxy chain, 20 ms, 1 % loss
	targetIdleKiB  = 32   // gateway memory per idle tunnelled connection
	targetLossRate = 0.01
)

// find returns path's sample at rtt and loss, if measured.
func (r *results) find(rtt time.Duration, loss float64, path string) (sample, bool) {
	s, ok := r.Samples[cell{RTT: rtt, Loss: loss}.String()][path]
	return s, ok
}

// gatewayPaths are the paths the targets are checked on, in order; the
// HAProxy target at 1 % loss is QUIC's alone: on TCP a loss stalls the
// tunnel's streams as it stalls the chain's connection.
var gatewayPaths = []string{"ewgw", "ewgw-tcp"}

// printTargets checks the gateway paths against their targets.
func printTargets(w io.Writer, res *results) {
	fmt.Fprintln(w, "#### Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path | target | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, path := range gatewayPaths {
		row := func(target, measured string, ok bool) {
			v := "met"
			if !ok {
				v = "**missed**"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", path, target, measured, v)
		}
		latencyTargets(res, path, row)
		if path == "ewgw" {
			haproxyTargets(res, path, row)
		}
		for _, m := range res.Memory {
			if m.Path != path || m.Err != "" {
				continue
			}
			for i, p := range m.Procs {
				kib := m.perConn(i)
				row(fmt.Sprintf("%s memory per idle tunnelled connection ≤ %d KiB (%d connections)", p, targetIdleKiB, m.Conns),
					fmt.Sprintf("%.1f KiB", kib), kib <= targetIdleKiB)
			}
		}
	}
	fmt.Fprintln(w)
}

// latencyTargets checks path's TTFB, warm p50 and one download against
// direct.
func latencyTargets(res *results, path string, row func(target, measured string, ok bool)) {
	for _, rtt := range []time.Duration{20 * time.Millisecond, 80 * time.Millisecond} {
		for _, loss := range []float64{0, targetLossRate} {
			e, ok1 := res.find(rtt, loss, path)
			d, ok2 := res.find(rtt, loss, "direct")
			if ok1 && ok2 && d.TTFBP50 > 0 {
				r := float64(e.TTFBP50) / float64(d.TTFBP50)
				row(fmt.Sprintf("new-connection TTFB p50 ≤ %.1f× direct (RTT %s, loss %g%%)", targetTTFB, rtt, loss*100),
					fmt.Sprintf("%.2f× (%s vs %s)", r, ms(e.TTFBP50), ms(d.TTFBP50)), r <= targetTTFB)
			}
		}
	}
	rtt := 20 * time.Millisecond
	e, ok := res.find(rtt, 0, path)
	if !ok {
		return
	}
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

// haproxyTargets checks path's downloads against the HAProxy chain's at
// 20 ms and 1 % loss.
func haproxyTargets(res *results, path string, row func(target, measured string, ok bool)) {
	rtt := 20 * time.Millisecond
	e, ok := res.find(rtt, targetLossRate, path)
	if !ok {
		return
	}
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
