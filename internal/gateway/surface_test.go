package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/tunnel"
)

// These tests attack a gateway from outside: a client with no identity on
// each of its listeners, and a peer that speaks the protocol but asks for
// what it was not given. Every refusal must dial nothing: the backends
// count what they accept.

// refused dials addr and starts a TLS handshake for name. It returns an
// error when a server certificate came back: the name was routed.
func refused(t *testing.T, addr, name string) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil // unreachable is refused
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err := c.Handshake(); err == nil {
		return errors.New("handshake completed: the name was routed")
	}
	return nil
}

// attackNames are server names that resolved to cluster-local services or
// the cluster's control plane before export became the only door.
var attackNames = []string{
	"private.shop.svc.cluster.local",
	"PRIVATE.shop.svc.cluster.local",
	"private.shop",
	"outbound_.443_._.private.shop.svc.cluster.local",
	"kubernetes.default.svc.cluster.local",
	"KUBERNETES.DEFAULT.SVC.CLUSTER.LOCAL",
	"\u212Aubernetes.default.svc.cluster.local", // the Kelvin sign, which strings.ToLower maps to "k"
	"kubernetes.default",
	"kubernetes.default.svc.clusterset.local",
	"outbound_.443_._.kubernetes.default",
	"outbound_.443_._.kubernetes.default.svc.cluster.local",
	"kube-dns.kube-system.svc.cluster.local",
	"kube-dns.kube-system",
}

// TestClientSurfaceExportOnly: on the client surface, export is the only
// door. A service that is not exported, the kube-apiserver's Service and
// kube-system are refused under every name form, with nothing dialled,
// even where a peer exports a service of the same name; an exported
// service still answers.
func TestClientSurfaceExportOnly(t *testing.T) {
	l := newTestLab(t, "a", "b")
	ca := newCA(t)
	svc := startService(t, ca, nil, "cluster-b")
	peerSvc := startService(t, ca, nil, "cluster-a")
	ep := []string{svc.backend.Addr()}
	local := []LabService{
		{Name: "web", Namespace: "shop", Port: 443, Endpoints: ep, Exported: true},
		{Name: "private", Namespace: "shop", Port: 443, Endpoints: ep},
		// Exported by mistake: the control plane stays unroutable.
		{Name: "kubernetes", Namespace: "default", Port: 443, Endpoints: ep, Exported: true},
		{Name: "kube-dns", Namespace: "kube-system", Port: 443, Endpoints: ep, Exported: true},
	}
	// a exports a shop/private of its own: b's private one must not fall
	// back to it.
	a, _ := startLab(t, l, "a", "127.0.0.1:0", []LabService{
		{Name: "private", Namespace: "shop", Port: 443, Endpoints: []string{peerSvc.backend.Addr()}, Exported: true},
	}, []LabPeer{{Cluster: "b"}})
	b, _ := startLab(t, l, "b", "127.0.0.1:0", local, []LabPeer{{Cluster: "a", Addr: a.Addr()}})
	waitExports(t, b, "a", "shop/private")
	for _, name := range attackNames {
		if err := refused(t, b.Addr(), name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if n, m := svc.backend.Accepted(), peerSvc.backend.Accepted(); n != 0 || m != 0 {
		t.Fatalf("backends accepted %d and %d connections, want none", n, m)
	}
	for reason, want := range map[string]float64{"not_exported": 4, "reserved": 8, "invalid_name": 1} {
		if got := metric(t, b, "ewgw_proxy_connections_total", "source", "client", "result", "rejected", "reason", reason); got < want {
			t.Errorf("rejected{%s} = %v, want at least %v", reason, got, want)
		}
	}
	if body := get(t, b.Addr(), svc.client); body == "" {
		t.Fatal("the exported service did not answer")
	}
}

// waitExports waits until gw sees peer export every service in keys
// ("ns/name"), and returns the services it sees.
func waitExports(t *testing.T, gw *Gateway, peer string, keys ...string) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var seen []string
		for _, p := range gw.peering.tun.Peers() {
			if p.Name == peer && p.Up {
				for _, e := range p.Exports {
					seen = append(seen, e.Service.String())
				}
			}
		}
		if !slices.ContainsFunc(keys, func(k string) bool { return !slices.Contains(seen, k) }) {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s exports %v, want %v", peer, seen, keys)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExportAudience: b exports shop/web to cluster a only and shop/db to
// c's trust domain only. Each peer's catalogue lists only what it may
// reach, and a stream header that names the other service, written by a
// peer that speaks the protocol directly, is refused at stream open with
// nothing dialled.
func TestExportAudience(t *testing.T) {
	l := newTestLab(t, "a", "b", "c")
	ca := newCA(t)
	web := startService(t, ca, nil, "web in b")
	db := startService(t, ca, nil, "db in b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", []LabService{
		{Name: "web", Namespace: "shop", Port: 443, Endpoints: []string{web.backend.Addr()}, Exported: true, ExportTo: []string{"a"}},
		{Name: "db", Namespace: "shop", Port: 5432, Endpoints: []string{db.backend.Addr()}, Exported: true, ExportTo: []string{"spiffe://c.ewgw.local"}},
	}, []LabPeer{{Cluster: "a"}, {Cluster: "c"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	c, _ := startLab(t, l, "c", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	if seen := waitExports(t, a, "b", "shop/web"); slices.Contains(seen, "shop/db") {
		t.Errorf("a received shop/db in its catalogue: %v", seen)
	}
	if seen := waitExports(t, c, "b", "shop/db"); slices.Contains(seen, "shop/web") {
		t.Errorf("c received shop/web in its catalogue: %v", seen)
	}
	// a's gateway routes web, and knows no db.
	if body := get(t, a.Addr(), web.client); body == "" {
		t.Fatal("a could not reach shop/web")
	}
	// A hand-written header naming db, on a's authenticated connection.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := a.peering.tun.Open(ctx, "b", tunnel.Header{Namespace: "shop", Name: "db", Port: 5432, SourceCluster: "c"}, nil)
	var re *tunnel.RefusedError
	if !errors.As(err, &re) || re.Code != tunnel.CodeNotExported {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open(shop/db) from a = %v, want refused not_exported", err)
	}
	if n := db.backend.Accepted(); n != 0 {
		t.Fatalf("db accepted %d connections, want none", n)
	}
	if got := metric(t, b, "ewgw_proxy_connections_total", "source", "peer", "result", "rejected", "reason", "not_exported"); got != 1 {
		t.Fatalf("b rejected{peer, not_exported} = %v, want 1", got)
	}
}

// TestPublicPassthrough: the opt-in public listener serves an
// unauthenticated client only local services exported to every peer: not a
// restricted export, not a private service, not a peer's export, not the
// control plane; and nothing is dialled for a refusal.
func TestPublicPassthrough(t *testing.T) {
	l := newTestLab(t, "b", "c")
	l.extra = map[string]string{"b": "public_passthrough: {listen: \"127.0.0.1:0\"}\n"}
	ca := newCA(t)
	web := startService(t, ca, nil, "web in b")
	other := startService(t, ca, nil, "others in b")
	remote := startService(t, ca, nil, "remote in c")
	ep := []string{other.backend.Addr()}
	c, _ := startLab(t, l, "c", "127.0.0.1:0", []LabService{
		{Name: "remote", Namespace: "shop", Port: 443, Endpoints: []string{remote.backend.Addr()}, Exported: true},
	}, []LabPeer{{Cluster: "b"}})
	b, _ := startLab(t, l, "b", "127.0.0.1:0", []LabService{
		{Name: "web", Namespace: "shop", Port: 443, Endpoints: []string{web.backend.Addr()}, Exported: true},
		{Name: "db", Namespace: "shop", Port: 443, Endpoints: ep, Exported: true, ExportTo: []string{"c"}},
		{Name: "private", Namespace: "shop", Port: 443, Endpoints: ep},
		{Name: "kubernetes", Namespace: "default", Port: 443, Endpoints: ep, Exported: true},
	}, []LabPeer{{Cluster: "c", Addr: c.Addr()}})
	waitExports(t, b, "c", "shop/remote")
	public := b.publicLn.Addr().String()
	for _, name := range append([]string{"db.shop.svc.cluster.local", "remote.shop.svc.cluster.local", "outbound_.443_._.remote.shop.svc.cluster.local"}, attackNames...) {
		if err := refused(t, public, name); err != nil {
			t.Errorf("public %q: %v", name, err)
		}
	}
	if n, m := other.backend.Accepted(), remote.backend.Accepted(); n != 0 || m != 0 {
		t.Fatalf("backends accepted %d and %d connections, want none", n, m)
	}
	if got := metric(t, b, "ewgw_proxy_connections_total", "source", "public", "result", "rejected", "reason", "not_exported"); got < 3 {
		t.Errorf("rejected{public, not_exported} = %v, want at least 3", got)
	}
	// The client surface of the same gateway still reaches c's export.
	if err := refused(t, b.Addr(), "remote.shop.svc.cluster.local"); err == nil {
		t.Error("the client surface refused a peer's export")
	}
	if body := get(t, public, web.client); body == "" {
		t.Fatal("the public passthrough did not serve an export open to every peer")
	}
	// The connection is counted when it closes, just after the response.
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, b, "ewgw_proxy_connections_total", "source", "public", "result", "ok", "reason", "") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("public ok never reached 1")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
