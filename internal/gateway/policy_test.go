package gateway

import (
	"bytes"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/status"
	"github.com/ewgw/ewgw/internal/testbed"
)

// TestEjectedLocalFailsOver: a's own endpoint for shop/web refuses
// connections; b exports a working one. Every connection still succeeds:
// the first ones fail locally and move to b before any server byte; once
// the local endpoint is ejected, connections go to b without dialling it.
func TestEjectedLocalFailsOver(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", exported(deadAddr), []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	const n = 10
	for range n {
		if body := get(t, a.Addr(), svc.client); !strings.Contains(body, "hello from cluster-b") {
			t.Fatalf("body = %q", body)
		}
	}
	ejectAfter := float64(a.cfg.Upstream.EjectAfter)
	if got := metric(t, a, "ewgw_proxy_dial_duration_seconds", "result", "error"); got != ejectAfter {
		t.Fatalf("cluster-a dialled its dead endpoint %v times, want %v (then ejected)", got, ejectAfter)
	}
	if got := metric(t, a, "ewgw_proxy_endpoint_ejections_total"); got != 1 {
		t.Fatalf("ejections = %v, want 1", got)
	}
}

// TestStatus: the status report shows the peer, the imported service with
// its endpoint count, and the routing decision for a name, and `ewgw
// status` prints it from the admin endpoint.
func TestStatus(t *testing.T) {
	l := newTestLab(t, "a", "b")
	l.extra = map[string]string{"a": "region: r1\n", "b": "region: r2\n"}
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")

	r := a.report(webName)
	if len(r.Peers) != 1 || !r.Peers[0].Up || r.Peers[0].Region != "r2" || r.Peers[0].Conns == 0 || r.Peers[0].CwndBytes == 0 {
		t.Fatalf("peers = %+v", r.Peers)
	}
	if len(r.Imported) != 1 || r.Imported[0].Service != "shop/web" || r.Imported[0].Clusters[0].Ports[0] != (model.ExportPort{Port: 443, Ready: 1}) {
		t.Fatalf("imported = %+v", r.Imported)
	}
	d := r.Decision
	if d == nil || d.Target != "shop/web:443" || d.Mode != "failover" || len(d.Candidates) != 1 || d.Candidates[0].Peer != "b" || d.Candidates[0].Share != 1 {
		t.Fatalf("decision = %+v", d)
	}
	if rb := b.report(""); len(rb.Exported) != 1 || rb.Exported[0].Service != "shop/web" || rb.Decision != nil {
		t.Fatalf("b's report = %+v", rb)
	}

	srv := httptest.NewServer(status.Handler(a.report))
	defer srv.Close()
	// What "ewgw status --name nope.shop" prints, read over HTTP.
	var out bytes.Buffer
	fetched, err := status.Fetch(t.Context(), srv.URL, "nope.shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := status.Print(&out, fetched); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster a (region r1): ready", "b     up", "shop/web", "443:1", "ROUTE nope.shop: refused (unknown_service)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ewgw status output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestSilentPeerWithdrawn: the path to b goes silent (a relay drops every
// datagram, and TCP to b gets no answer, as when b's host dies: no close
// reaches a). a withdraws b's
// exports when b's catalogue lease runs out, well before the QUIC idle
// timeout, and the time from silence to withdrawal is reported.
func TestSilentPeerWithdrawn(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	relay, err := testbed.NewUDPRelay(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: relay.Addr(), TCPAddr: blackHole(t)}})
	waitPeers(t, a, "b")
	if body := get(t, a.Addr(), svc.client); !strings.Contains(body, "hello from cluster-b") {
		t.Fatalf("body = %q", body)
	}
	lease := b.cfg.Peering.Lease.D()
	start := time.Now()
	relay.Drop(true)
	waitPeers(t, a) // withdrawn
	took := time.Since(start)
	t.Logf("silence to withdrawal: %v (lease %v, idle timeout %v)", took, lease, a.cfg.Peering.IdleTimeout.D())
	if took < lease/2 || took > lease+time.Second {
		t.Fatalf("withdrawn after %v, want about the %v lease", took, lease)
	}
}

// blackHole returns a TCP address that accepts connections and never
// answers on them: a dead host behind a load balancer.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}
