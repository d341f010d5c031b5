// Command ewgw is the east-west gateway: it routes TLS connections by SNI,
// without terminating them, to local endpoints or to peer clusters.
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

	"github.com/ewgw/ewgw/internal/certcli"
)

const usage = `usage: ewgw <command> [flags]

commands:
  run --config FILE   run the gateway
  certs [flags]       create a root CA, per-cluster CAs and gateway SVIDs (certs --help)
  certs rotate [flags]  renew a cluster's intermediate CA under the same root (certs rotate --help)
  status [flags]      show a running gateway's peers, services and routing (status --help)
  version             print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ewgw:", err)
		}
		os.Exit(1)
	}
}

// run dispatches a subcommand. ctx ends on SIGTERM or interrupt.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "run":
		return runGateway(ctx, args[1:], stderr)
	case "certs":
		return certcli.Run(ctx, args[1:], stdout)
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "ewgw", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
