// Command wan measures what ewgw costs against the direct path across an
// emulated wide-area link: network namespaces ewgw-wan-a (client, gateway
// A, the front proxies) and ewgw-wan-b (server, gateway B, the back
// proxies), joined only by perf/wan's user-space link emulator. It compares
// the direct path, ewgw (QUIC between the gateways), ewgw-tcp (the TCP
// transport: TLS over TCP with yamux streams) and TCP passthrough chains
// of HAProxy and nginx at several round-trip times and loss rates,
// and writes markdown tables and PNG plots. See perf/README.md.
//
// The program plays several roles. Run as root without -role, it builds the
// namespaces, runs the link, and serves the link's control API on a unix
// socket; then it runs itself in ewgw-wan-a with -role=bench (or
// -role=verify), which starts everything else and measures. The server-side
// processes run in ewgw-wan-b through "ip netns exec".
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
	"github.com/ewgw/ewgw/perf/wan"
)

func main() {
	o, err := parseFlags(os.Args[1:])
	if err == nil {
		err = runRole(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wan:", err)
		os.Exit(1)
	}
}

// runRole runs the role o names.
func runRole(o options) error {
	switch o.role {
	case "":
		if o.replot != "" {
			return replot(o.replot, o.out)
		}
		return orchestrate(o)
	case "verify":
		return verify(o)
	case "bench":
		return runBench(o)
	case "source":
		return serveSource(o.listen)
	case "backend":
		return bench.RunBackendOn(o.listen, o.cert, o.key)
	}
	return fmt.Errorf("unknown role %q", o.role)
}

// orchestrate builds the topology, forwards packets between the
// namespaces and runs this program again in NamespaceA with role bench or
// verify, its output passed through. It removes the namespaces when done.
func orchestrate(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, TUN devices)")
	}
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "ewgw-perf-wan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	topo, err := wan.Setup(o.cc)
	if err != nil {
		return err
	}
	defer wan.Teardown()
	defer topo.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	link := wan.NewLink(topo.A, topo.B, wan.Config{})
	linkDone := make(chan error, 1)
	go func() { linkDone <- link.Run(ctx) }()
	sock := filepath.Join(dir, "link.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: wan.Handler(link), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends when ln closes
	defer srv.Close()
	role := "bench"
	if o.verify {
		role = "verify"
	}
	err = runChild(ctx, append(os.Args[1:], "-role="+role, "-ctl="+sock))
	stop()
	return errors.Join(err, <-linkDone)
}

// runChild runs this program in NamespaceA with args, output passed
// through, and ends it if ctx ends first.
func runChild(ctx context.Context, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := wan.Command(wan.NamespaceA, self, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = bench.OrphanKill()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		err = <-done
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%s failed: %w", args[len(args)-2], exit)
	}
	return err
}
