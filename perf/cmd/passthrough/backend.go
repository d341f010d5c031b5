package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ewgw/ewgw/internal/testbed"
)

// Server names the client asks for; every path routes both to the one
// backend, which picks the protocol from the name it was asked for.
const (
	nameBulk = "bulk.bench.svc.cluster.local"
	nameEcho = "echo.bench.svc.cluster.local"
)

// runBackend is the child process: a Go TLS server on 127.0.0.1:0 that
// prints its address on stdout and serves until stdin closes or a signal
// arrives. Running it in its own process keeps its allocations and GC away
// from the client's timings.
func runBackend(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load backend cert: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	b := testbed.ServeTLS(ln, cfg, serveByName)
	fmt.Println(b.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case <-sig:
	case <-stdinClosed:
	}
	ln.Close()
	return nil
}

// serveByName completes the handshake and serves the bulk protocol or echo,
// by the server name the client sent.
func serveByName(c *tls.Conn) {
	if err := c.Handshake(); err != nil {
		return
	}
	if strings.HasPrefix(c.ConnectionState().ServerName, "bulk.") {
		testbed.ServeBulk(c)
		return
	}
	// Echo: every record read is written back, until the client closes.
	io.Copy(c, c)
}
