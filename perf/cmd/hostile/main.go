// Command hostile attacks a real "ewgw run" gateway (the victim, cluster
// B) while a well-behaved peer gateway (cluster A) carries cross-cluster
// calls through it, and reports what the victim did, its peak resident
// memory, and the latency of honest calls before and during each attack.
//
// Attacks, each against freshly started gateways (-scenarios):
//
//   - catalogue: a peer with an allowed identity (cluster C) floods
//     catalogue deltas past max_imported_services on every connection it
//     may hold (16), and reconnects to do it again; catalogue1: the same on
//     one connection;
//   - streams: the same peer opens up to 100,000 streams that never finish
//     a stream header;
//   - conns: it opens 1,000 QUIC connections;
//   - claims: it claims Ready = 2^32−1 and another cluster's region, and
//     sends hellos in another cluster's name;
//   - initial: tens of thousands of unauthenticated QUIC Initials from many
//     source ports, never answered;
//   - hello: 10,000 TCP connections from 20 source addresses that never
//     finish a ClientHello; hello1: the same from one address.
//
// Everything runs on loopback; no traffic leaves the machine. See
// perf/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

type options struct {
	ewgw       string
	scenarios  []string
	quiet      time.Duration // baseline before each attack
	phase      time.Duration // each attack
	interval   time.Duration // between two probe calls
	rssBound   int64         // bytes
	streams    int
	conns      int
	initials   int
	initRate   int
	helloConns int
	helloRate  int
	keep       bool
	profile    string // directory for the victim's CPU profile of each attack
}

var allScenarios = []string{"catalogue1", "catalogue", "streams", "conns", "claims", "initial", "hello", "hello1"}

func main() {
	role := flag.String("role", "client", "client (the benchmark) or backend (the child TLS server)")
	cert := flag.String("cert", "", "backend role: certificate file")
	key := flag.String("key", "", "backend role: key file")
	var o options
	flag.StringVar(&o.ewgw, "ewgw", "../bin/ewgw", "ewgw binary")
	sc := flag.String("scenarios", strings.Join(allScenarios, ","), "attacks to run, comma-separated")
	flag.DurationVar(&o.quiet, "quiet", 8*time.Second, "quiet baseline before each attack")
	flag.DurationVar(&o.phase, "phase", 15*time.Second, "length of each attack")
	flag.DurationVar(&o.interval, "interval", 50*time.Millisecond, "pause between two probe calls")
	rss := flag.Int64("rss-mib", 256, "the victim's resident memory bound, MiB")
	flag.IntVar(&o.streams, "streams", 100_000, "streams the streams attack tries to open")
	flag.IntVar(&o.conns, "conns", 1000, "connections the conns attack opens")
	flag.IntVar(&o.initials, "initials", 30_000, "distinct QUIC Initials the initial flood sends")
	flag.IntVar(&o.initRate, "initial-rate", 3000, "Initials per second")
	flag.IntVar(&o.helloConns, "hello-conns", 10_000, "TCP connections the hello flood holds")
	flag.IntVar(&o.helloRate, "hello-rate", 2000, "most new TCP connections per second the hello flood opens")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with certificates, configs and gateway logs")
	flag.StringVar(&o.profile, "profile", "", "write the victim's CPU profile of each attack into this directory (<scenario>.pprof)")
	flag.Parse()
	o.scenarios = strings.Split(*sc, ",")
	o.rssBound = *rss << 20
	if abs, err := filepath.Abs(o.ewgw); err == nil && strings.Contains(o.ewgw, "/") {
		o.ewgw = abs
	}
	var err error
	if *role == "backend" {
		err = bench.RunBackend(*cert, *key)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// run mints certificates for the three clusters, starts the backend, runs
// every scenario against its own pair of gateways and prints the report.
func run(o options) error {
	for _, s := range o.scenarios {
		if attacks[s] == nil {
			return fmt.Errorf("-scenarios: unknown %q (known: %s)", s, strings.Join(allScenarios, ","))
		}
	}
	dir, cleanup, err := bench.TempDir("ewgw-perf-hostile-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	backend, addr, client, err := bench.StartTLSBackend(dir, "-role=backend")
	if err != nil {
		return err
	}
	defer func() { backend.Process.Signal(os.Interrupt); backend.Wait() }()
	certs, err := bench.MintClusters(o.ewgw, dir, clusterA, clusterB, clusterC)
	if err != nil {
		return err
	}
	env := &setup{o: o, dir: dir, certs: certs, backend: addr, client: client}
	fmt.Fprintln(os.Stderr, bench.Machine())
	var results []*result
	for _, s := range o.scenarios {
		fmt.Fprintf(os.Stderr, "scenario %s\n", s)
		r, err := env.scenario(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		results = append(results, r)
	}
	printReport(os.Stdout, o, results)
	return nil
}
