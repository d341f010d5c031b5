// Command ewgw-demo is `make demo`: two gateways and a TLS service on
// loopback, one cross-cluster call verified end to end (internal/demo). It
// is a binary of its own so the gateway's binary carries none of its test
// fixtures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ewgw/ewgw/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := demo.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ewgw-demo:", err)
		}
		os.Exit(1)
	}
}
