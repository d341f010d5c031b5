package main

import (
	"io"
	"log/slog"

	"github.com/ewgw/ewgw/internal/config"
)

// newLogger builds the process logger from the validated log section.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	// The level was validated by config; UnmarshalText cannot fail here.
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
