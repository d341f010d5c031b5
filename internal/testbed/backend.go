package testbed

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Backend is a TLS server on a real socket.
type Backend struct {
	ln   *countingListener
	stop func()
}

// Addr returns the backend's listen address.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Accepted returns how many connections the backend has accepted: a
// refusal that "dialled nothing" leaves it unchanged.
func (b *Backend) Accepted() int64 { return b.ln.n.Load() }

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Close stops the backend and waits for its connections to end.
func (b *Backend) Close() { b.stop() }

// ServeTLS serves each TLS connection on ln with fn, in its own goroutine.
func ServeTLS(l net.Listener, cfg *tls.Config, fn func(*tls.Conn)) *Backend {
	ln := &countingListener{Listener: l}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				fn(tls.Server(c, cfg))
			})
		}
	})
	return &Backend{ln: ln, stop: func() { ln.Close(); wg.Wait() }}
}

// ServeHello serves HTTPS on ln, answering every request with a line naming
// the backend and the server name the client asked for.
func ServeHello(l net.Listener, cfg *tls.Config, name string) *Backend {
	ln := &countingListener{Listener: l}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s, sni %s\n", name, r.TLS.ServerName)
		}),
		TLSConfig: cfg,
	}
	done := make(chan struct{})
	go func() {
		_ = srv.ServeTLS(ln, "", "") // always an error: ErrServerClosed after Close
		close(done)
	}()
	return &Backend{ln: ln, stop: func() { srv.Close(); <-done }}
}
