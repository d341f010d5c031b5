package testbed

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Backend is a TLS server on a real socket.
type Backend struct {
	ln   net.Listener
	stop func()
}

// Addr returns the backend's listen address.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Close stops the backend and waits for its connections to end.
func (b *Backend) Close() { b.stop() }

// ServeTLS serves each TLS connection on ln with fn, in its own goroutine.
func ServeTLS(ln net.Listener, cfg *tls.Config, fn func(*tls.Conn)) *Backend {
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
func ServeHello(ln net.Listener, cfg *tls.Config, name string) *Backend {
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
