package proxy

import (
	"context"
	"net"
	"syscall"
	"time"
)

// Keepalive probing of client connections: Go's defaults for accepted
// connections (probe after 15 s idle, every 15 s, give up after 9).
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// Listen opens the gateway's TCP listener on addr. Where the platform allows
// (listenOpts), options every client connection needs are set once on the
// listening socket, whose accepted connections inherit them, instead of
// with four setsockopt calls per connection: TCP keepalive, so a vanished
// client cannot pin a backend connection forever. On Linux the kernel also
// defers the accept until the client's first bytes (its ClientHello) have
// arrived (TCP_DEFER_ACCEPT, like nginx's "deferred" and HAProxy's
// "defer-accept"): a TLS client always speaks first, the first read of the
// hello then finds it waiting, and a client that connects and sends
// nothing costs no accepted socket or goroutine.
func Listen(addr string, helloTimeout time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { err = listenOpts(int(fd), helloTimeout) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
	if inheritsKeepAlive {
		lc.KeepAlive = -1 // listenOpts set it on the listener
	} else {
		lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
