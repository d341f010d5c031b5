package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/testbed"
)

const (
	webName  = "web.default.svc.cluster.local"
	bulkName = "bulk.default.svc.cluster.local"
)

// harness is a proxy in front of two real TLS backends: "web" speaks HTTPS,
// "bulk" the testbed bulk protocol.
type harness struct {
	ca    *testbed.CA
	cert  tls.Certificate
	proxy *Proxy
	addr  string // proxy listen address
	dials atomic.Int64
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	ca, err := testbed.NewCA("backend CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server(webName, bulkName)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{ca: ca, cert: cert}
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	web := testbed.ServeHello(listen(t), srvTLS, "web")
	t.Cleanup(web.Close)
	bulk := testbed.ServeTLS(listen(t), srvTLS, testbed.ServeBulk)
	t.Cleanup(bulk.Close)
	tab := route.NewTable(route.Input{Services: []route.Service{
		{Key: model.ServiceKey{Namespace: "default", Name: "web"}, Exported: true,
			Ports: []route.Port{{Port: 443, Endpoints: []netip.AddrPort{netip.MustParseAddrPort(web.Addr())}}}},
		{Key: model.ServiceKey{Namespace: "default", Name: "bulk"}, Exported: true,
			Ports: []route.Port{{Port: 443, Endpoints: []netip.AddrPort{netip.MustParseAddrPort(bulk.Addr())}}}},
	}})
	dialer := &net.Dialer{}
	cfg := Config{
		Table: func() *route.Table { return tab },
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	h.proxy, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = serve(t, h.proxy)
	return h
}

// serve runs p on a listener opened as the gateway opens it, until the test
// ends, and returns the listener's address.
func serve(tb testing.TB, p *Proxy) string {
	tb.Helper()
	ln := proxyListen(tb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

// count returns the connections counted with result and reason.
func (h *harness) count(result, reason string) float64 {
	return testutil.ToFloat64(h.proxy.m.conns.WithLabelValues(sourceClient, result, reason))
}

// clientTLS returns a client config that verifies the backend's certificate.
func (h *harness) clientTLS(name string) *tls.Config {
	return &tls.Config{ServerName: name, RootCAs: h.ca.Pool()}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// proxyListen opens the proxy's listener the way the gateway does (Listen:
// inherited keepalive, deferred accept).
func proxyListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
