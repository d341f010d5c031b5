package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/status"
)

// runStatus prints a running gateway's status, read from its admin server.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", config.DefaultAdminListen, "the gateway's admin address")
	name := fs.String("name", "", "also show how this server name routes")
	asJSON := fs.Bool("json", false, "print the raw JSON report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := status.Fetch(ctx, *admin, *name)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return status.Print(stdout, r)
}
