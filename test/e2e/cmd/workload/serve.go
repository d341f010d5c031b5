//go:build e2e

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"
)

// serve answers every HTTPS request with "hello from CLUSTER, sni NAME":
// the client learns which cluster served it, and under which name it
// asked, from the bytes it received.
func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8443", "TCP address")
	certFile := fs.String("cert", "", "certificate chain (PEM)")
	keyFile := fs.String("key", "", "private key (PEM)")
	cluster := fs.String("cluster", "", "the cluster named in the greeting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cluster == "" {
		return errors.New("serve: --cluster is required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s, sni %s\n", *cluster, r.TLS.ServerName)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	// SIGTERM, as a terminating pod gets: finish the requests in flight.
	// ServeTLS returns as soon as Shutdown begins; the process stays until
	// Shutdown has finished.
	drained := make(chan struct{})
	context.AfterFunc(ctx, func() {
		defer close(drained)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	})
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-drained
	return nil
}

// waitTCP waits until addr accepts TCP connections: the readiness probe of
// the local suite's kubelet stand-in, run inside a cluster's namespace.
func waitTCP(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wait-tcp", flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", *addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait-tcp %s: %w", *addr, err)
		case <-tick.C:
		}
	}
}
