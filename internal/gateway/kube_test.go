package gateway

import (
	"context"
	"crypto/tls"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/discovery/kubetest"
	"github.com/ewgw/ewgw/internal/route"
	rbacv1 "k8s.io/api/rbac/v1"
)

// kubeA and kubeB are two real apiservers, started on first use and
// stopped when the package's tests end.
var kubeA, kubeB kubetest.Lazy

func stopApiservers() {
	kubeA.Stop()
	kubeB.Stop()
}

// TestKubernetesPolicies runs two gateways whose services come from two
// real kube-apiservers, each gateway authorised only by its ServiceAccount's
// RBAC. Both clusters serve shop/web; b also has shop/private, not exported.
// In order: local first; a's backend scaled to zero -> connections land in
// b; scaled back -> they return; a distribute 90/10 annotation -> 1,000
// connections split within ±3 points; the unexported service stays
// unreachable from a. Every check is on what the client saw: the backend's
// certificate verified and its greeting naming its cluster.
func TestKubernetesPolicies(t *testing.T) {
	ka, kb := kubeA.Get(t), kubeB.Get(t)
	ctx := t.Context()
	l := newTestLab(t, "a", "b")
	l.extra = map[string]string{"a": "region: r1\n", "b": "region: r2\n"}
	l.kubeconfig = map[string]string{}
	for name, kc := range map[string]*kubetest.Cluster{"a": ka, "b": kb} {
		path := filepath.Join(t.TempDir(), name+".kubeconfig")
		if err := kc.GatewayKubeconfig(ctx, path, "ewgw", "ewgw", nil); err != nil {
			t.Fatal(err)
		}
		l.kubeconfig[name] = path
	}
	ca := newCA(t)
	svcA := startService(t, ca, nil, "cluster-a")
	svcB := startService(t, ca, nil, "cluster-b")
	exportAnn := map[string]string{"ewgw.io/export": "true"}
	webA := kubetest.Backend{Namespace: "shop", Name: "web", Port: 443, Annotations: exportAnn,
		Endpoints: []netip.AddrPort{podAddr(svcA.backend.Addr())}}
	webB := kubetest.Backend{Namespace: "shop", Name: "web", Port: 443, Annotations: exportAnn,
		Endpoints: []netip.AddrPort{podAddr(svcB.backend.Addr())}}
	private := kubetest.Backend{Namespace: "shop", Name: "private", Port: 443,
		Endpoints: []netip.AddrPort{podAddr(svcB.backend.Addr())}}
	for _, put := range []struct {
		c *kubetest.Cluster
		b kubetest.Backend
	}{{ka, webA}, {kb, webB}, {kb, private}} {
		if err := put.c.PutBackend(ctx, put.b); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := startLab(t, l, "b", "127.0.0.1:0", nil, []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	if err := a.WaitTable(ctx, func(tab *route.Table) bool { return len(tab.Endpoints(webTarget)) == 1 }); err != nil {
		t.Fatal(err)
	}
	served := func() string { return servedBy(t, a.Addr(), svcA.client) }
	if got := served(); got != "cluster-a" {
		t.Fatalf("with a local endpoint, served by %s", got)
	}

	// Scale a's backend to zero: the next connections go to b.
	webA.Endpoints = nil
	start := time.Now()
	if err := ka.PutBackend(ctx, webA); err != nil {
		t.Fatal(err)
	}
	n := untilServedBy(t, served, "cluster-b")
	t.Logf("scale to zero: first connection served by cluster-b %v after the API write (%d connections served locally before)", time.Since(start), n)

	// Scale back: connections return to a.
	webA.Endpoints = []netip.AddrPort{podAddr(svcA.backend.Addr())}
	start = time.Now()
	if err := ka.PutBackend(ctx, webA); err != nil {
		t.Fatal(err)
	}
	n = untilServedBy(t, served, "cluster-a")
	t.Logf("scale back: first connection served by cluster-a %v after the API write (%d served remotely before)", time.Since(start), n)

	// Distribute 90/10 from a's region r1 to r1 and r2.
	webA.Annotations = map[string]string{"ewgw.io/export": "true", "ewgw.io/distribute": "r1=90,r2=10"}
	if err := ka.PutBackend(ctx, webA); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitTable(ctx, func(tab *route.Table) bool { return tab.Decide(webName).Mode == route.Distribute }); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const total, workers = 1000, 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total; i += workers {
				c := served()
				mu.Lock()
				counts[c]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	share := 100 * float64(counts["cluster-b"]) / total
	t.Logf("distribute 90/10 over %d connections: %v (%.1f%% to r2)", total, counts, share)
	if counts["cluster-a"]+counts["cluster-b"] != total || math.Abs(share-10) > 3 {
		t.Fatalf("split %v: %.1f%% to r2, want 10 ± 3", counts, share)
	}

	// shop/private is served in b but not exported: a cannot reach it.
	privateClient := svcA.client.Clone()
	privateClient.ServerName = "private.shop.svc.cluster.local"
	if c, err := tls.Dial("tcp", a.Addr(), privateClient); err == nil {
		c.Close()
		t.Fatal("reached b's unexported shop/private through a")
	}
	if got := metric(t, a, "ewgw_proxy_connections_total", "source", "client", "result", "rejected", "reason", "unknown_service"); got != 1 {
		t.Fatalf("a rejected{unknown_service} = %v, want 1", got)
	}
}

// servedBy makes one TLS connection through addr, verifying the backend's
// certificate, and returns the cluster named in the backend's greeting.
func servedBy(t *testing.T, addr string, client *tls.Config) string {
	body := get(t, addr, client)
	_, rest, ok := strings.Cut(body, "hello from ")
	if !ok {
		t.Fatalf("unexpected body %q", body)
	}
	cluster, _, _ := strings.Cut(rest, ",")
	return cluster
}

// untilServedBy makes connections until one is served by want, and returns
// how many were served elsewhere first. Each is a real connection: this
// measures what clients see, not when the table changed.
func untilServedBy(t *testing.T, served func() string, want string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; ; n++ {
		if served() == want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served by %s after %d tries", want, n)
		}
	}
}

// TestKubernetesMissingVerb: a gateway whose ClusterRole lacks one verb
// stops at start with an error naming it, rather than serving an empty
// table.
func TestKubernetesMissingVerb(t *testing.T) {
	ka := kubeA.Get(t)
	rules := slices.Clone(kubetest.GatewayRules)
	rules[2] = rbacRuleWithout(rules[2], "watch") // endpointslices
	path := filepath.Join(t.TempDir(), "a.kubeconfig")
	if err := ka.GatewayKubeconfig(t.Context(), path, "ewgw", "lacking", rules); err != nil {
		t.Fatal(err)
	}
	l := newTestLab(t, "a", "b")
	l.kubeconfig = map[string]string{"a": path}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gw, done, err := l.Start(ctx, "a", "127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = <-done
	want := "system:serviceaccount:ewgw:lacking may not watch endpointslices.discovery.k8s.io"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("gateway ended with %v, want an error containing %q", err, want)
	}
	if gw.ready() == nil {
		t.Fatal("a gateway that never synced reported ready")
	}
}

// rbacRuleWithout returns r without verb.
func rbacRuleWithout(r rbacv1.PolicyRule, verb string) rbacv1.PolicyRule {
	r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
	return r
}
