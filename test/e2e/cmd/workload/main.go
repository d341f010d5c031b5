//go:build e2e

// Command workload is the end-to-end suite's application: a TLS server
// that greets with its cluster's name (the backend), and the client that
// calls services through a gateway and reports what it observed. The local
// suite runs it in the clusters' network namespaces; the kind script runs
// it as a container image. Both read the same manifests
// (test/e2e/manifests).
//
//	workload serve --listen ADDR --cert FILE --key FILE --cluster NAME
//	workload call --addr ADDR --sni NAME --ca FILE [-n N] [-c N] [--until-cert SHA256 | --until-refused] [--timeout D]
//	workload wait-tcp --addr ADDR [--timeout D]
//	workload idle
//
// call prints one JSON object (see report) on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: workload serve|call|quic|wait-tcp|idle [flags]")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "call":
		return call(ctx, args[1:], stdout)
	case "quic":
		return quicProbe(ctx, args[1:], stdout)
	case "wait-tcp":
		return waitTCP(ctx, args[1:])
	case "idle":
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}
