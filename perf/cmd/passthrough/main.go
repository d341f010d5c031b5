// Command passthrough benchmarks ewgw's local TLS passthrough against the
// direct path, HAProxy (mode tcp, req.ssl_sni, splice-auto) and nginx
// (stream, ssl_preread), with the same client and the same Go TLS backend,
// and prints markdown tables of the results. See perf/README.md.
//
// The backend runs as a child process (this program re-executed with
// -role=backend) so that its allocations and GC pauses do not land in the
// client's timings, and each proxy runs as its own real process.
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
	ewgw        string
	ewgwEnv     []string
	paths       []string
	tests       []string
	rounds      int
	bulkBytes   int64
	workers     int
	rateFor     time.Duration
	rtts        int
	ttfbs       int
	maxBusy     float64
	profileDir  string
	profileFor  time.Duration
	keep        bool
	samplesFile string
	backendCert string
	backendKey  string
}

func main() {
	role := flag.String("role", "client", "client (the benchmark) or backend (the child TLS server)")
	var o options
	var paths string
	var bulkMB int64
	flag.StringVar(&o.ewgw, "ewgw", "../bin/ewgw", "ewgw binary")
	var ewgwEnv string
	flag.StringVar(&ewgwEnv, "ewgw-env", "", "extra environment for ewgw, space-separated (e.g. GOMAXPROCS=1), for experiments")
	flag.StringVar(&paths, "paths", "direct,ewgw,haproxy,nginx", "paths to measure, comma-separated; ewgw2 and haproxy2 chain two proxies")
	var tests string
	flag.StringVar(&tests, "tests", strings.Join(testNames, ","), "tests to run, comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each result is the median over rounds")
	flag.Int64Var(&bulkMB, "bulk-mb", 2048, "bulk transfer size per direction, MiB")
	flag.IntVar(&o.workers, "workers", 32, "concurrent workers for the connection rate")
	flag.DurationVar(&o.rateFor, "rate-for", 5*time.Second, "duration of one connection-rate run")
	flag.IntVar(&o.rtts, "rtts", 20000, "warm echo round trips (64 bytes) on one connection")
	flag.IntVar(&o.ttfbs, "ttfbs", 2000, "sequential new connections for time to first byte")
	flag.Float64Var(&o.maxBusy, "max-busy", 0.25, "wait while other processes keep more than this CPU fraction busy")
	flag.StringVar(&o.profileDir, "profile", "", "if set, also write ewgw CPU profiles (bulk, connection rate) here")
	flag.DurationVar(&o.profileFor, "profile-for", 10*time.Second, "length of each ewgw CPU profile")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with generated configs and proxy logs")
	flag.StringVar(&o.samplesFile, "samples", "", "if set, also write every round's results here as CSV, to pool several runs")
	var pool string
	flag.StringVar(&pool, "pool", "", "measure nothing: pool the rounds of these -samples files (comma-separated) and print their ratios and CPU medians")
	flag.StringVar(&o.backendCert, "cert", "", "backend role: certificate file")
	flag.StringVar(&o.backendKey, "key", "", "backend role: key file")
	flag.Parse()
	o.paths = strings.Split(paths, ",")
	o.ewgwEnv = strings.Fields(ewgwEnv)
	o.tests = strings.Split(tests, ",")
	o.bulkBytes = bulkMB << 20
	// Proxies run in their own directories; resolve the binary first.
	if abs, err := filepath.Abs(o.ewgw); err == nil && strings.Contains(o.ewgw, "/") {
		o.ewgw = abs
	}
	var err error
	switch {
	case *role == "backend":
		err = bench.RunBackend(o.backendCert, o.backendKey)
	case pool != "":
		err = printPooled(os.Stdout, strings.Split(pool, ","))
	default:
		err = runBench(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "passthrough:", err)
		os.Exit(1)
	}
}

// runBench sets up the backend and proxies, measures every path and prints
// the tables.
func runBench(o options) error {
	dir, cleanup, err := bench.TempDir("ewgw-perf-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	cmd, addr, client, err := bench.StartTLSBackend(dir, "-role=backend")
	if err != nil {
		return err
	}
	backend := &path{name: "direct", addr: addr, cmd: cmd}
	defer backend.stop()
	paths, err := startPaths(o, dir, backend)
	if err != nil {
		return err
	}
	defer stopAll(paths)
	for _, p := range paths {
		if err := p.ready(client); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, bench.Machine())
	res, err := measureAll(o, paths, client)
	if err != nil {
		return err
	}
	printReport(os.Stdout, o, paths, res)
	if o.samplesFile != "" {
		if err := writeSamples(o.samplesFile, paths, res, float64(o.bulkBytes)/(1<<30)); err != nil {
			return err
		}
	}
	if o.profileDir != "" {
		for _, p := range paths {
			if p.name == "ewgw" {
				return profileEwgw(o, p, client)
			}
		}
	}
	return nil
}

// startPaths starts the proxies named in o.paths; the direct path is the
// backend itself. On error it stops what it started.
func startPaths(o options, dir string, backend *path) ([]*path, error) {
	var out []*path
	for _, name := range o.paths {
		p, err := startPath(o, dir, name, backend)
		if p != nil {
			out = append(out, p)
		}
		if err != nil {
			stopAll(out)
			return nil, err
		}
	}
	return out, nil
}

func startPath(o options, dir, name string, backend *path) (*path, error) {
	sub := filepath.Join(dir, name)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return nil, err
	}
	switch name {
	case "direct":
		return &path{name: "direct", addr: backend.addr}, nil
	case "ewgw":
		return startEwgw(o.ewgw, o.ewgwEnv, sub, backend.addr)
	case "haproxy":
		return startHAProxy(sub, backend.addr)
	case "nginx":
		return startNginx(sub, backend.addr)
	case "ewgw2":
		return startChain(name, sub, backend.addr, func(dir, upstream string) (*path, error) {
			return startEwgw(o.ewgw, o.ewgwEnv, dir, upstream)
		})
	case "haproxy2":
		return startChain(name, sub, backend.addr, startHAProxy)
	}
	return nil, fmt.Errorf("unknown path %q", name)
}

func stopAll(paths []*path) {
	for _, p := range paths {
		p.stop()
	}
}
