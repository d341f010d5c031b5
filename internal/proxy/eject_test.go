package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ewgw/ewgw/internal/lb"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/testbed"
)

// TestDeadEndpointRetriedAndEjected: one of two endpoints refuses
// connections. Every client still gets through (the dial moves on to the
// live endpoint), and after EjectAfter failures the dead endpoint is
// ejected and no longer dialled.
func TestDeadEndpointRetriedAndEjected(t *testing.T) {
	ca, err := testbed.NewCA("backend CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server(webName)
	if err != nil {
		t.Fatal(err)
	}
	live := testbed.ServeHello(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}}, "live")
	t.Cleanup(live.Close)
	deadLn := listen(t)
	dead := netip.MustParseAddrPort(deadLn.Addr().String())
	deadLn.Close() // nothing listens: dials are refused at once

	tab := route.NewTable(route.Input{Services: []route.Service{{
		Key:      model.ServiceKey{Namespace: "default", Name: "web"},
		Exported: true,
		Ports:    []route.Port{{Port: 443, Endpoints: []netip.AddrPort{dead, netip.MustParseAddrPort(live.Addr())}}},
	}}})
	var mu sync.Mutex
	dials := map[string]int{}
	p, err := New(Config{
		Table:    func() *route.Table { return tab },
		Balancer: lb.New(lb.Config{EjectAfter: 2}),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)

	// Connections stay open, so the live endpoint is always the busier one
	// and least-connections keeps choosing the dead one until it is ejected.
	client := &tls.Config{ServerName: webName, RootCAs: ca.Pool()}
	for i := range 10 {
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
	}
	if got := dials[dead.String()]; got != 2 {
		t.Fatalf("dead endpoint dialled %d times, want 2 (then ejected)", got)
	}
	if got := testutil.ToFloat64(p.m.ejections); got != 1 {
		t.Fatalf("ejections = %v, want 1", got)
	}
}
