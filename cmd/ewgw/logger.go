package main

import (
	"io"
	"log/slog"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/loglimit"
)

// newLogger builds the process logger from the validated log section. Each
// message is rate-limited (internal/loglimit), so no flood of connections
// or peer messages can flood the log; the limiter's drop counter is
// returned for the gateway's registry.
func newLogger(c config.Log, w io.Writer) (*slog.Logger, *loglimit.Handler) {
	var level slog.Level
	// The level was validated by config; UnmarshalText cannot fail here.
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	lim := loglimit.New(h, loglimit.Config{})
	return slog.New(lim), lim
}
