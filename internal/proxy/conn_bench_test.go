package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// BenchmarkNewConnection is the gateway's cost per new local connection,
// with the TLS taken out: the client sends a real ClientHello captured once,
// the backend answers with a 1 KiB "server flight", the client sends 64
// bytes, the backend echoes them, and both close, for many clients at once.
// ns/op and allocs/op cover client, backend and proxy in one process;
// compare them between builds, not with perf/'s figures. The proxy runs
// with its defaults, the gateway's own listener and dialer.
func BenchmarkNewConnection(b *testing.B) {
	hello := captureHello(b, &tls.Config{ServerName: webName})
	backend := listen(b)
	defer backend.Close()
	go serveFlights(backend, len(hello))
	tab := route.NewTable(route.Input{Services: []route.Service{{
		Key:      model.ServiceKey{Namespace: "default", Name: "web"},
		Exported: true,
		Ports:    []route.Port{{Port: 443, Endpoints: []netip.AddrPort{netip.MustParseAddrPort(backend.Addr().String())}}},
	}}})
	p, err := New(Config{Table: func() *route.Table { return tab }})
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, p)
	b.ReportAllocs()
	// Enough clients at once to keep every CPU busy, so ns/op is CPU per
	// connection (over GOMAXPROCS), not a round trip's latency.
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		flight := make([]byte, 1024)
		msg := make([]byte, 64)
		for pb.Next() {
			if err := roundTrip(addr, hello, flight, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// roundTrip is one benchmark connection, client side.
func roundTrip(addr string, hello, flight, msg []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, flight); err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	if n, err := c.Read(msg[:1]); n != 0 || !errors.Is(err, io.EOF) {
		return errors.New("backend did not close after the echo")
	}
	return nil
}

// serveFlights is the benchmark's backend: per connection it reads the
// hello (helloLen bytes), writes a 1 KiB flight, echoes 64 bytes, and
// closes once the client has closed.
func serveFlights(ln net.Listener, helloLen int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, max(helloLen, 1024))
			if _, err := io.ReadFull(c, buf[:helloLen]); err != nil {
				return
			}
			if _, err := c.Write(buf[:1024]); err != nil {
				return
			}
			if _, err := io.ReadFull(c, buf[:64]); err != nil {
				return
			}
			if _, err := c.Write(buf[:64]); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}
