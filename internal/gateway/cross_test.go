package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/testbed"
)

// These tests run real gateways in-process: each from its own config file
// and certificate files, peered over real QUIC on loopback, in front of
// real TLS servers.

var webTarget = route.Target{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Port: 443}

const webName = "web.shop.svc.cluster.local"

// service is a TLS service with a CA of its own, which no gateway holds.
type service struct {
	backend *testbed.Backend
	client  *tls.Config
}

func startService(t *testing.T, ca *testbed.CA, fn func(*tls.Conn), hello string) *service {
	t.Helper()
	cert, err := ca.Server(webName)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	s := &service{client: &tls.Config{RootCAs: ca.Pool(), ServerName: webName}}
	if fn != nil {
		s.backend = testbed.ServeTLS(ln, cfg, fn)
	} else {
		s.backend = testbed.ServeHello(ln, cfg, hello)
	}
	t.Cleanup(s.backend.Close)
	return s
}

func newCA(t *testing.T) *testbed.CA {
	t.Helper()
	ca, err := testbed.NewCA("workload CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newTestLab(t *testing.T, clusters ...string) *Lab {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("EWGW_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := NewLab(t.TempDir(), clusters, log)
	if err != nil {
		t.Fatal(err)
	}
	// EWGW_TUNNEL_TRANSPORT runs the gateways' peering on one transport
	// (tcp, quic), as it does the tunnel's own tests.
	l.Transport = os.Getenv("EWGW_TUNNEL_TRANSPORT")
	return l
}

// startLab starts a lab gateway that stops when the test ends, or earlier
// when stop is called; stop returns the gateway's result.
func startLab(t *testing.T, l *Lab, cluster, listen string, svcs []LabService, peers []LabPeer) (gw *Gateway, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	gw, done, err := l.Start(ctx, cluster, listen, svcs, peers)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("gateway %s: %v", cluster, err)
		}
	})
	return gw, stop
}

func exported(addr string) []LabService {
	return []LabService{{Name: "web", Namespace: "shop", Port: 443, Endpoints: []string{addr}, Exported: true}}
}

// waitPeers waits until gw routes webTarget to exactly peers, in order.
func waitPeers(t *testing.T, gw *Gateway, peers ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := gw.WaitTable(ctx, func(tab *route.Table) bool {
		return strings.Join(tab.Peers(webTarget), ",") == strings.Join(peers, ",")
	})
	if err != nil {
		t.Fatalf("routing table never listed peers %v: %v; tunnel peers: %+v", peers, err, gw.peering.tun.Peers())
	}
}

// get makes one HTTPS request through gw on a new connection, verifying the
// service's own certificate, and returns the body.
func get(t *testing.T, addr string, client *tls.Config) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: client, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + webName + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCrossClusterCall(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	gws := map[string]*Gateway{"a": a, "b": b}
	active := map[string]func() bool{}
	for name, gw := range gws {
		active[name] = gw.tunnelActive()
		if active[name]() {
			t.Errorf("gateway %s: tunnelActive says yes before any stream", name)
		}
	}
	// The client trusts only the service's CA: verification succeeding
	// through two gateways proves neither terminated TLS.
	if body := get(t, a.Addr(), svc.client); !strings.Contains(body, "hello from cluster-b, sni "+webName) {
		t.Fatalf("body = %q", body)
	}
	// One stream each side, which the governor's queue signal sees.
	for name, gw := range gws {
		if begun, _ := gw.proxy.TunnelStreams(); begun != 1 {
			t.Errorf("gateway %s: %d tunnel streams begun, want 1", name, begun)
		}
		if !active[name]() {
			t.Errorf("gateway %s: tunnelActive says no after a stream", name)
		}
	}
}

// TestUnexportedUnreachable: a service that is not exported is refused by
// its gateway even when a peer asks for it by name.
func TestUnexportedUnreachable(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	local := exported(svc.backend.Addr())
	local[0].Exported = false
	b, _ := startLab(t, l, "b", "127.0.0.1:0", local, []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a) // a knows b is up
	if err := a.WaitTable(t.Context(), func(*route.Table) bool { return len(a.peering.tun.Peers()) == 1 && a.peering.tun.Peers()[0].Up }); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", a.Addr(), svc.client)
	if err == nil {
		c.Close()
		t.Fatal("reached a cluster-local service of another cluster")
	}
	if got := metric(t, a, "ewgw_proxy_connections_total", "source", "client", "result", "rejected", "reason", "unknown_service"); got != 1 {
		t.Fatalf("cluster-a rejected{unknown_service} = %v, want 1", got)
	}
}

// TestRetryOnSecondPeer: b exports the service but its endpoint refuses
// connections, c's works. Every connection tries b first (a's policy lists
// b as the primary cluster), is refused before any server byte, and is
// carried to c, invisibly to the client.
func TestRetryOnSecondPeer(t *testing.T) {
	l := newTestLab(t, "a", "b", "c")
	svc := startService(t, newCA(t), nil, "cluster-c")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(deadAddr), []LabPeer{{Cluster: "a"}})
	c, _ := startLab(t, l, "c", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	l.extra = map[string]string{"a": "policy: {mode: primary, primary: [b, c]}\n"}
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}, {Cluster: "c", Addr: c.Addr()}})
	waitPeers(t, a, "b", "c")
	const n = 10
	for range n {
		if body := get(t, a.Addr(), svc.client); !strings.Contains(body, "hello from cluster-c") {
			t.Fatalf("body = %q", body)
		}
	}
	// b refuses with dial_failed until its endpoint is ejected, then with
	// no_endpoint.
	refused := metric(t, a, "ewgw_proxy_remote_open_failures_total", "reason", "dial_failed") +
		metric(t, a, "ewgw_proxy_remote_open_failures_total", "reason", "no_endpoint")
	if refused != n {
		t.Fatalf("cluster-a saw %v refusals from b, want %d (one per connection)", refused, n)
	}
}

// TestThousandConcurrent holds 1,000 tunnelled connections open at once,
// then checks a payload both ways on each by SHA-256, with half-close. The
// connections are established 50 at a time (a burst of 1,000 TLS
// handshakes under -race measures only how starved the CI box is), and all
// payloads flow together once every connection is up.
func TestThousandConcurrent(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), testbed.ServeBulk, "")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	const n, size = 1000, 32 << 10
	var up, wg sync.WaitGroup
	errs := make(chan error, n)
	handshakes := make(chan struct{}, 50)
	start := make(chan struct{})
	up.Add(n)
	for i := range n {
		wg.Go(func() {
			handshakes <- struct{}{}
			raw, err := net.Dial("tcp", a.Addr())
			var c *tls.Conn
			if err == nil {
				c = tls.Client(raw, svc.client)
				err = c.Handshake()
			}
			<-handshakes
			up.Done()
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			<-start
			if err := testbed.BulkTLS(c, raw, size, size+int64(i)); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	up.Wait()
	if got := metric(t, a, "ewgw_proxy_active_connections"); got != n {
		t.Errorf("cluster-a has %v active connections with all %d up, want %d", got, n, n)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPeerRestart kills cluster-b's gateway and starts it again on the same
// address: cluster-a redials, and new connections succeed again.
func TestPeerRestart(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, stopB := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	addrB := b.Addr()
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: addrB}})
	waitPeers(t, a, "b")
	get(t, a.Addr(), svc.client)

	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, a) // b withdrawn
	startLab(t, l, "b", addrB, exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	waitPeers(t, a, "b")
	if body := get(t, a.Addr(), svc.client); !strings.Contains(body, "hello from cluster-b") {
		t.Fatalf("after restart: body = %q", body)
	}
	st := a.peering.tun.Peers()[0]
	if st.LastRedial <= 0 {
		t.Fatalf("reconnect time not reported: %+v", st)
	}
	t.Logf("cluster-a reconnected to the restarted cluster-b in %v", st.LastRedial)
}

// metric returns the value of the counter or gauge name with the given
// label pairs from gw's registry, 0 when absent.
func metric(t *testing.T, gw *Gateway, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := gw.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestUntrustedPeerRefused: b admits only a's trust domain; c, from another
// trust domain, dials b and is refused, with the reason counted.
func TestUntrustedPeerRefused(t *testing.T) {
	l := newTestLab(t, "a", "b", "c")
	l.allow = map[string][]string{"b": {"a.ewgw.local"}}
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}, {Cluster: "c"}})
	c, _ := startLab(t, l, "c", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitMetric(t, b, "ewgw_identity_peer_rejections_total", 1, "reason", "untrusted_domain")
	for _, gw := range []*Gateway{b, c} {
		for _, p := range gw.peering.tun.Peers() {
			if p.Up {
				t.Fatalf("%s sees peer %s up", gw.cfg.Cluster, p.Name)
			}
		}
	}
	// a, allowed, still gets through.
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	get(t, a.Addr(), svc.client)
}

// TestIdlePeersQuiet: a change to one gateway's exports costs one control
// message per connection, and idle peers then stay quiet. Both gateways
// rebuild routing and announce their exports whenever a peer's change
// arrives, so a gateway that announced unchanged exports would set off an
// endless echo.
func TestIdlePeersQuiet(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), nil, "cluster-b")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	// Count only once every connection a dials is attached at both ends: a
	// connection that attaches later gets the catalogue it missed, which is
	// not an echo.
	conns := a.cfg.Peering.ConnsPerPeer
	for gw, peer := range map[*Gateway]string{a: "b", b: "a"} {
		err := gw.WaitTable(t.Context(), func(*route.Table) bool {
			ps := gw.peering.tun.Peers()
			return len(ps) == 1 && ps[0].Name == peer && ps[0].Conns == conns
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	received := func() float64 {
		var n float64
		for _, gw := range []*Gateway{a, b} {
			for _, kind := range []string{"exports", "delta"} {
				n += metric(t, gw, "ewgw_tunnel_control_messages_received_total", "kind", kind)
			}
		}
		return n
	}
	before := received()
	extra := route.Target{Service: model.ServiceKey{Namespace: "shop", Name: "extra"}, Port: 8443}
	// The change goes the way a discovery update does (setLocal: rebuild,
	// announce). Setting the tunnel's exports directly would race b's own
	// rebuilds, which announce b's services and would take "extra" back.
	b.mu.Lock()
	local := slices.Clone(b.local)
	b.mu.Unlock()
	local = append(local, route.Service{Key: extra.Service, Exported: true,
		Ports: []route.Port{{Port: extra.Port, Endpoints: []netip.AddrPort{netip.MustParseAddrPort(svc.backend.Addr())}}}})
	b.setLocal(local)
	if err := a.WaitTable(t.Context(), func(tab *route.Table) bool { return len(tab.Peers(extra)) == 1 }); err != nil {
		t.Fatal(err)
	}
	// Let a's rebuild for that change finish, then count. Every connection
	// carries the whole catalogue, so the change crosses each once.
	a.rebuild()
	if n := received() - before; n > float64(conns) {
		t.Fatalf("%v catalogue updates for one change over %d connections: the peers are echoing each other", n, conns)
	}
}
