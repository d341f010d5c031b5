package perf

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/proxy"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/testbed"
)

const (
	nameEcho = "echo.bench.svc.cluster.local"
	nameBulk = "bulk.bench.svc.cluster.local"
)

// BenchmarkPassthrough compares the direct path with the proxy running in
// the same process: a new TLS connection with a 64-byte echo per iteration,
// and a 64 MiB download per iteration. Client, proxy and backend share one
// Go runtime here; cmd/passthrough runs them as separate processes.
func BenchmarkPassthrough(b *testing.B) {
	backend, client := startBackend(b)
	paths := []struct{ name, addr string }{
		{"direct", backend},
		{"proxy", startProxy(b, backend)},
	}
	for _, p := range paths {
		b.Run("conn/"+p.name, func(b *testing.B) {
			msg := make([]byte, 64)
			for b.Loop() {
				if err := echoConn(p.addr, client, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bulk/"+p.name, func(b *testing.B) {
			const n = 64 << 20
			b.SetBytes(n)
			cfg := client.Clone()
			cfg.ServerName = nameBulk
			for b.Loop() {
				raw, err := net.Dial("tcp", p.addr)
				if err != nil {
					b.Fatal(err)
				}
				if err := testbed.Bulk(raw, cfg, 0, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startBackend serves echo and the bulk protocol, by server name, and
// returns its address and a client config that trusts it.
func startBackend(b *testing.B) (string, *tls.Config) {
	b.Helper()
	ca, err := testbed.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Server(nameEcho, nameBulk)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := testbed.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *tls.Conn) {
		if err := c.Handshake(); err != nil {
			return
		}
		if c.ConnectionState().ServerName == nameBulk {
			testbed.ServeBulk(c)
			return
		}
		io.Copy(c, c)
	})
	b.Cleanup(srv.Close)
	return srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: nameEcho, MinVersion: tls.VersionTLS13}
}

// startProxy runs a proxy that routes both names to backend.
func startProxy(b *testing.B, backend string) string {
	b.Helper()
	ep := netip.MustParseAddrPort(backend)
	svc := func(name string) route.Service {
		return route.Service{
			Key:   model.ServiceKey{Namespace: "bench", Name: name},
			Ports: []route.Port{{Port: 443, Endpoints: []netip.AddrPort{ep}}},
		}
	}
	table := route.NewTable(route.Input{Services: []route.Service{svc("echo"), svc("bulk")}})
	p, err := proxy.New(proxy.Config{Table: func() *route.Table { return table }})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// echoConn makes one TLS connection and one echo round trip of msg.
func echoConn(addr string, cfg *tls.Config, msg []byte) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, len(msg)))
	return err
}
