//go:build linux

package proxy

import (
	"fmt"
	"syscall"
	"time"
)

// inheritsKeepAlive: Linux copies SO_KEEPALIVE and the TCP_KEEP* settings
// of a listening socket to the connections it accepts.
const inheritsKeepAlive = true

func listenOpts(fd int, helloTimeout time.Duration) error {
	opts := []struct {
		level, opt, v int
		name          string
	}{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle / time.Second), "TCP_KEEPIDLE"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(keepAliveInterval / time.Second), "TCP_KEEPINTVL"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount, "TCP_KEEPCNT"},
		// Seconds to wait for the first data before accepting anyway
		// (the hello deadline then applies as usual).
		{syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, max(1, int((helloTimeout+time.Second-1)/time.Second)), "TCP_DEFER_ACCEPT"},
	}
	for _, o := range opts {
		if err := syscall.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fmt.Errorf("setsockopt %s: %w", o.name, err)
		}
	}
	return nil
}
