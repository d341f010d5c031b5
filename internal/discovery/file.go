// Package discovery turns service sources into the routing model: a static
// file today, Kubernetes informers next. Every source reports whole
// snapshots of []route.Service to a callback.
package discovery

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/route"
)

// File is a static services file source (config.ServicesFile), re-read when
// its content changes. Content is compared rather than modification times, so
// Kubernetes' ConfigMap symlink swaps are seen like any other change.
type File struct {
	// Path is the services file.
	Path string
	// Interval between checks. Default 2s.
	Interval time.Duration
	// Update receives each new, valid snapshot.
	Update func([]route.Service)
	// Logger reports files that fail to parse; the last good snapshot stays.
	Logger *slog.Logger

	last []byte
}

// Load reads the file once and, when valid, reports it. Call it before Run so
// the gateway starts with its services.
func (f *File) Load() error {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return err
	}
	svcs, err := config.ParseServices(b)
	if err != nil {
		return err
	}
	f.last = b
	f.Update(svcs)
	return nil
}

// Run checks the file for changes until ctx ends.
func (f *File) Run(ctx context.Context) error {
	interval := f.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.check()
		}
	}
}

func (f *File) check() {
	b, err := os.ReadFile(f.Path)
	if err == nil && bytes.Equal(b, f.last) {
		return
	}
	if err == nil {
		var svcs []route.Service
		if svcs, err = config.ParseServices(b); err == nil {
			f.last = b
			f.Update(svcs)
			return
		}
	}
	if f.Logger != nil {
		f.Logger.Warn("services file reload failed, keeping last good", "path", f.Path, "err", err)
	}
	f.last = b // report a bad file once, not on every tick
}
