package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type options struct {
	// Internal: set by the orchestrator for the roles it starts.
	role, ctl, listen, cert, key string

	verify   bool
	quick    bool
	ewgw     string
	cc       string
	rtts     []time.Duration // round trips to measure at
	losses   []float64       // loss fractions to measure at
	rate     float64         // bits/s of the link in every figure
	paths    []string
	tests    []string
	ttfbs    int           // new connections per TTFB figure (at most; see ttfbFor)
	ttfbFor  time.Duration // time cap per TTFB figure
	rttN     int           // warm round trips (at most; see rttFor)
	rttFor   time.Duration
	bulkFor  time.Duration // per bulk transfer
	streams  int
	workers  int
	rateFor  time.Duration
	memConns int
	memRTT   time.Duration
	rampRTT  time.Duration
	rampFor  time.Duration
	out      string
	keep     bool
	fresh    bool
	replot   string
	cpp      int
	ewgwEnv  []string
	maxBusy  float64
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("wan", flag.ContinueOnError)
	fs.StringVar(&o.role, "role", "", "internal: bench, verify, source, backend (set by the orchestrator)")
	fs.StringVar(&o.ctl, "ctl", "", "internal: the link's control socket")
	fs.StringVar(&o.listen, "listen", "", "internal: source and backend roles: listen address")
	fs.StringVar(&o.cert, "cert", "", "internal: backend role: certificate file")
	fs.StringVar(&o.key, "key", "", "internal: backend role: key file")
	fs.BoolVar(&o.verify, "verify", false, "verify the emulator (ping, loss, TCP rate, its own capacity) instead of the benchmark")
	fs.BoolVar(&o.quick, "quick", false, "fewer samples and shorter transfers (a few minutes)")
	fs.StringVar(&o.ewgw, "ewgw", "../bin/ewgw", "ewgw binary")
	fs.StringVar(&o.cc, "cc", "cubic", "TCP congestion control in both namespaces")
	rtts := fs.String("rtts", "2,20,80", "round-trip times to measure at, ms")
	losses := fs.String("losses", "0,1", "loss rates to measure at, percent per direction")
	rate := fs.Float64("rate", 500, "link rate in Mbit/s for every figure (the emulator does not sustain 1000 on 2 cores: see -verify)")
	paths := fs.String("paths", "direct,ewgw,ewgw-tcp,haproxy,nginx", "paths to compare (ewgw: the gateways peer over QUIC; ewgw-tcp: over TLS over TCP; ewgw-noudp: on the default transport, auto, with UDP between them dropped)")
	tests := fs.String("tests", "ttfb,rtt,down,down8,loaded,rate,mem,ramp", "tests to run")
	fs.IntVar(&o.ttfbs, "ttfbs", 200, "new connections per TTFB figure (at most)")
	fs.DurationVar(&o.ttfbFor, "ttfb-for", 8*time.Second, "time cap per TTFB figure")
	fs.IntVar(&o.rttN, "rtt-n", 2000, "warm round trips per figure (at most)")
	fs.DurationVar(&o.rttFor, "rtt-for", 6*time.Second, "time cap per warm round-trip figure")
	fs.DurationVar(&o.bulkFor, "bulk-for", 8*time.Second, "duration of each bulk download")
	fs.IntVar(&o.streams, "streams", 8, "concurrent connections of the parallel download")
	fs.IntVar(&o.workers, "workers", 32, "workers of the connection-rate test")
	fs.DurationVar(&o.rateFor, "rate-for", 4*time.Second, "duration of the connection-rate test")
	fs.IntVar(&o.memConns, "mem-conns", 10000, "idle tunnelled connections for the memory figure")
	memRTT := fs.Float64("mem-rtt", 2, "RTT of the link during the memory figure, ms")
	rampRTT := fs.Float64("ramp-rtt", 20, "RTT (at 0% loss) of the ramp figure: one download's rate second by second, ms")
	fs.DurationVar(&o.rampFor, "ramp-for", 20*time.Second, "duration of the ramp download")
	fs.StringVar(&o.out, "out", "out/wan", "directory for results.md, results.json and the PNG plots")
	fs.IntVar(&o.cpp, "conns-per-peer", 8, "ewgw's peering.conns_per_peer (QUIC connections between the gateways; 8 is the gateway's default)")
	fs.StringVar(&o.replot, "replot", "", "only draw the PNG plots of this results.json into -out (no root needed)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir with certificates, configs and logs")
	fs.BoolVar(&o.fresh, "fresh", true, "restart every proxy at each RTT and loss, so ewgw's QUIC connection starts on the link it is measured on (false: one connection carries its congestion state through every cell)")
	ewgwEnv := fs.String("ewgw-env", "", "extra environment for both gateways, space-separated")
	fs.Float64Var(&o.maxBusy, "max-busy", 0.25, "wait while other processes keep more than this CPU fraction busy")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.rtts, err = durations(*rtts); err != nil {
		return o, fmt.Errorf("-rtts: %w", err)
	}
	if o.losses, err = floats(*losses, 0.01); err != nil {
		return o, fmt.Errorf("-losses: %w", err)
	}
	o.rate = *rate * 1e6
	o.memRTT = time.Duration(*memRTT * float64(time.Millisecond))
	o.rampRTT = time.Duration(*rampRTT * float64(time.Millisecond))
	o.paths = strings.Split(*paths, ",")
	o.tests = strings.Split(*tests, ",")
	o.ewgwEnv = strings.Fields(*ewgwEnv)
	if o.quick {
		o.ttfbs, o.ttfbFor, o.rttN, o.rttFor = 50, 3*time.Second, 500, 2*time.Second
		o.bulkFor, o.rateFor, o.memConns = 4*time.Second, 2*time.Second, min(o.memConns, 2000)
		o.rampFor = 10 * time.Second
	}
	// Children run in other directories; resolve the paths first.
	for _, p := range []*string{&o.ewgw, &o.out} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	return o, nil
}

// durations parses comma-separated milliseconds.
func durations(s string) ([]time.Duration, error) {
	v, err := floats(s, float64(time.Millisecond))
	out := make([]time.Duration, len(v))
	for i, f := range v {
		out[i] = time.Duration(f)
	}
	return out, err
}

// floats parses comma-separated numbers, each times scale.
func floats(s string, scale float64) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v*scale)
	}
	return out, nil
}
