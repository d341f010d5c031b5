package proxy

import (
	"context"
	"log/slog"
)

// connLog writes a connection's log lines. Its fields are built only for a
// line that is written: a per-connection Logger.With costs allocations and,
// with the JSON handler, encoding, even when the level is off, and that
// showed in the connection-rate profile.
type connLog struct {
	l      *slog.Logger
	fields func() []slog.Attr
}

func (c connLog) log(level slog.Level, msg string, extra ...slog.Attr) {
	ctx := context.Background()
	if !c.l.Enabled(ctx, level) {
		return
	}
	c.l.LogAttrs(ctx, level, msg, append(c.fields(), extra...)...)
}

func errAttr(err error) slog.Attr { return slog.String("err", errString(err)) }
