// Command tunnel benchmarks ewgw's cross-cluster path against the direct
// one: a client's TLS connection through gateway A, one QUIC stream on a
// mutually authenticated QUIC connection to gateway B, and B's dial of the
// server, against the client connecting to the server itself. Both gateways
// are real "ewgw run --config" processes with certificates from "ewgw
// certs"; the server is the Go TLS backend of perf/internal/bench in a
// child process; the client is the same code for both paths. It measures
// each path with several conns_per_peer settings and prints markdown
// tables. See perf/README.md.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

type options struct {
	ewgw         string
	ewgwEnv      []string
	connsPerPeer []int
	tests        []string
	scaleTests   []string
	rounds       int
	bulkBytes    int64
	streams      int
	workers      int
	rateFor      time.Duration
	rtts         int
	ttfbs        int
	maxBusy      float64
	profileDir   string
	profileFor   time.Duration
	trace        bool
	keep         bool
}

func main() {
	role := flag.String("role", "client", "client (the benchmark) or backend (the child TLS server)")
	cert := flag.String("cert", "", "backend role: certificate file")
	key := flag.String("key", "", "backend role: key file")
	var o options
	flag.StringVar(&o.ewgw, "ewgw", "../bin/ewgw", "ewgw binary")
	ewgwEnv := flag.String("ewgw-env", "", "extra environment for both gateways, space-separated (e.g. GOMAXPROCS=1), for experiments")
	cpp := flag.String("conns-per-peer", "8,2", "conns_per_peer settings, one gateway pair each; the first runs every test, the others -scale-tests")
	tests := flag.String("tests", strings.Join(testNames, ","), "tests to run on direct and the first tunnel, comma-separated")
	scale := flag.String("scale-tests", "down,down8", "tests to run on the other conns_per_peer settings")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each result is the median over rounds")
	bulkMB := flag.Int64("bulk-mb", 1024, "bulk download size, MiB: on one connection, and split over -streams connections")
	flag.IntVar(&o.streams, "streams", 8, "concurrent connections of the parallel download")
	flag.IntVar(&o.workers, "workers", 32, "concurrent workers for the connection rate")
	flag.DurationVar(&o.rateFor, "rate-for", 5*time.Second, "duration of one connection-rate run")
	flag.IntVar(&o.rtts, "rtts", 20000, "warm echo round trips (64 bytes) on one connection")
	flag.IntVar(&o.ttfbs, "ttfbs", 2000, "sequential new connections for time to first byte")
	flag.Float64Var(&o.maxBusy, "max-busy", 0.25, "wait while other processes keep more than this CPU fraction busy")
	flag.StringVar(&o.profileDir, "profile", "", "if set, also write CPU profiles of both gateways (download, warm RTT, connection rate) here")
	flag.DurationVar(&o.profileFor, "profile-for", 10*time.Second, "length of each gateway CPU profile")
	flag.BoolVar(&o.trace, "trace", false, "with -profile, write execution traces (<gateway>-<test>.trace, for go tool trace) instead of CPU profiles")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with certificates, configs and gateway logs")
	flag.Parse()
	o.ewgwEnv = strings.Fields(*ewgwEnv)
	o.tests = strings.Split(*tests, ",")
	o.scaleTests = strings.Split(*scale, ",")
	o.bulkBytes = *bulkMB << 20
	// Gateways run in their own directories; resolve the binary first.
	if abs, err := filepath.Abs(o.ewgw); err == nil && strings.Contains(o.ewgw, "/") {
		o.ewgw = abs
	}
	var err error
	for _, f := range strings.Split(*cpp, ",") {
		n, perr := strconv.Atoi(strings.TrimSpace(f))
		if perr != nil || n < 1 || n > 64 {
			err = fmt.Errorf("-conns-per-peer: %q is not in [1, 64]", f)
		}
		o.connsPerPeer = append(o.connsPerPeer, n)
	}
	if err == nil {
		if *role == "backend" {
			err = bench.RunBackend(*cert, *key)
		} else {
			err = runBench(o)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunnel:", err)
		os.Exit(1)
	}
}

// runBench mints certificates, starts the backend and one gateway pair per
// conns_per_peer setting, measures every path and prints the tables.
func runBench(o options) error {
	dir, cleanup, err := bench.TempDir("ewgw-perf-tunnel-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	backend, addr, client, err := bench.StartTLSBackend(dir, "-role=backend")
	if err != nil {
		return err
	}
	defer func() { backend.Process.Signal(os.Interrupt); backend.Wait() }()
	certs, err := bench.MintCerts(o.ewgw, dir)
	if err != nil {
		return err
	}
	env := &setup{dir: dir, certs: certs, backend: addr, client: client}
	paths := []*path{{name: "direct", addr: addr}}
	for _, n := range o.connsPerPeer {
		paths = append(paths, &path{name: fmt.Sprintf("tunnel/%d", n), connsPerPeer: n})
	}
	fmt.Fprintln(os.Stderr, bench.Machine())
	if o.rounds > 0 {
		res, err := measureAll(o, env, paths)
		if err != nil {
			return err
		}
		printReport(os.Stdout, o, paths, res)
	}
	if o.profileDir != "" {
		return profileTunnel(o, env, paths[1])
	}
	return nil
}

// setup is what every path shares: the temp dir, the certificates from
// "ewgw certs", the backend's address and the client's TLS config.
type setup struct {
	dir, certs, backend string
	client              *tls.Config
}
