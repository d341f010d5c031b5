package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"path/filepath"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/discovery/kube"
	"github.com/ewgw/ewgw/internal/gateway"
)

// runGateway is "ewgw run": it loads the config, builds the gateway and
// runs it until ctx ends, then drains.
func runGateway(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "gateway config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("run: --config is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(cfg.Discovery.File) {
		cfg.Discovery.File = filepath.Join(filepath.Dir(*path), cfg.Discovery.File)
	}
	log, lim := newLogger(cfg.Log, stderr)
	if cfg.Discovery.Kubernetes != nil {
		kube.RouteKlog(log) // process-global, so here rather than per gateway
	}
	gw, err := gateway.New(ctx, cfg, gateway.Options{Base: filepath.Dir(*path), Logger: log, Version: version(), Procs: true})
	if err != nil {
		return err
	}
	gw.Registry().MustRegister(lim.Dropped())
	return gw.Run(ctx)
}
