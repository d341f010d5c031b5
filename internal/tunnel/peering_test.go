package tunnel

import (
	"errors"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/tunnel/param"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPeeringHello(t *testing.T) {
	exports := []Export{{Service: model.ServiceKey{Namespace: "default", Name: "reviews"}, Ports: []ExportPort{{Port: 9080, Ready: 2}}}}
	a, b := pair(t, func(a, b *Config) {
		a.Exports = exports
		a.ConnsPerPeer, b.ConnsPerPeer = 3, 2
	})
	got := waitPeer(t, b, "east", func(ps PeerStatus) bool { return ps.Conns == 5 }) // a dials 3, b dials 2
	if got.Cluster != "east" || got.Region != "east-region" || got.Zone != "east-zone" || got.Version != "test" {
		t.Errorf("b sees %+v", got)
	}
	if got.ID != testID || !reflect.DeepEqual(got.Exports, exports) || got.Since.IsZero() || got.LastError != nil {
		t.Errorf("b sees %+v", got)
	}
	ws := waitPeer(t, a, "west", isUp)
	if ws.Cluster != "west" || len(ws.Exports) != 0 {
		t.Errorf("a sees %+v", ws)
	}

	t.Run("export update", func(t *testing.T) {
		next := []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "cart"}, Ports: []ExportPort{{Port: 80, Ready: 1}, {Port: 443, Ready: 1}}}}
		a.tun.SetExports(next)
		waitPeer(t, b, "east", func(ps PeerStatus) bool { return reflect.DeepEqual(ps.Exports, next) })
	})
	if v := metric(t, a.reg, "ewgw_tunnel_peers_up", ""); v.GetGauge().GetValue() != 1 {
		t.Errorf("peers_up %v, want 1", v.GetGauge().GetValue())
	}

	t.Run("path figures", func(t *testing.T) {
		// Handshakes and hellos have crossed every connection: each has an
		// RTT sample, a congestion window, and sent packets.
		ps := waitPeer(t, a, "west", func(ps PeerStatus) bool { return ps.Conns == 5 })
		if ps.RTT <= 0 || ps.CongestionWindow < 5*1200 || ps.PacketsSent == 0 || ps.LossRatio() < 0 || ps.LossRatio() > 1 {
			t.Errorf("a sees west: rtt %v, cwnd %d, sent %d, lost %d", ps.RTT, ps.CongestionWindow, ps.PacketsSent, ps.PacketsLost)
		}
		gauge := func(name string) float64 {
			m := metric(t, a.reg, name, "west")
			if m == nil {
				t.Fatalf("no %s{peer=west}", name)
			}
			return m.GetGauge().GetValue()
		}
		if rtt := gauge("ewgw_tunnel_peer_rtt_seconds"); rtt <= 0 || rtt > 1 {
			t.Errorf("ewgw_tunnel_peer_rtt_seconds %v", rtt)
		}
		if cwnd := gauge("ewgw_tunnel_peer_congestion_window_bytes"); cwnd < 5*1200 {
			t.Errorf("ewgw_tunnel_peer_congestion_window_bytes %v, want at least 5 connections' worth", cwnd)
		}
		if loss := gauge("ewgw_tunnel_peer_packet_loss_ratio"); loss < 0 || loss > 1 {
			t.Errorf("ewgw_tunnel_peer_packet_loss_ratio %v", loss)
		}
	})
}

// TestPeeringDeltas: after the hello, each change to the catalogue
// reaches the peer as one delta per connection, and every connection's
// view, not only the peer's catalogue, follows the sender's list.
func TestPeeringDeltas(t *testing.T) {
	svc := func(ns, name string, pp ...ExportPort) Export {
		return Export{Service: model.ServiceKey{Namespace: ns, Name: name}, Ports: pp}
	}
	cur := []Export{
		svc("data", "db", ExportPort{Port: 5432, Ready: 2}),
		svc("shop", "cart", ExportPort{Port: 80, Ready: 3}),
		svc("shop", "web", ExportPort{Port: 443, Ready: 4}),
		svc("shop", "zeta", ExportPort{Port: 8080, Ready: 1}),
	}
	a, b := pair(t, func(a, b *Config) {
		a.Exports = cur
		a.ConnsPerPeer, b.ConnsPerPeer = 2, 2
	})
	waitPeer(t, b, "east", func(ps PeerStatus) bool { return reflect.DeepEqual(ps.Exports, cur) })
	const conns = 4 // a's two and b's two each carry the catalogue
	steps := []struct {
		name string
		edit func(e []Export) []Export
		kind string // the update each connection gets
	}{
		{"add a service", func(e []Export) []Export {
			return slices.Insert(e, 1, svc("shop", "api", ExportPort{Port: 9090, Ready: 1}))
		}, "delta"},
		{"change a ready count", func(e []Export) []Export { e[2].Ports[0].Ready = 7; return e }, "delta"},
		{"add a port", func(e []Export) []Export { e[3].Ports = append(e[3].Ports, ExportPort{Port: 8443, Ready: 4}); return e }, "delta"},
		{"remove a service", func(e []Export) []Export { return slices.Delete(e, 0, 1) }, "delta"},
		{"replace everything", func([]Export) []Export { return []Export{svc("x", "y", ExportPort{Port: 1, Ready: 1})} }, "exports"},
	}
	for _, s := range steps {
		before := map[string]float64{"delta": 0, "exports": 0}
		for k := range before {
			before[k] = counter(t, b.reg, controlReceived, k)
		}
		cur = s.edit(cloneExports(cur))
		a.tun.SetExports(cur)
		waitPeer(t, b, "east", func(ps PeerStatus) bool { return reflect.DeepEqual(ps.Exports, cur) })
		eventually(t, s.name+" on every connection", func() bool { return allViews(b, "east", cur) })
		for k, n := range before {
			want := n
			if k == s.kind {
				want += conns
			}
			if got := counter(t, b.reg, controlReceived, k); got != want {
				t.Errorf("%s: %v %s messages, want %v", s.name, got, k, want)
			}
		}
	}
}

// allViews reports whether every connection of n's named peer holds exports
// as its view of the peer's catalogue.
func allViews(n *node, name string, exports []Export) bool {
	p := n.tun.peers[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if !reflect.DeepEqual(c.view.Exports, exports) {
			return false
		}
	}
	return len(p.conns) > 0
}

func TestPeerAuthFailures(t *testing.T) {
	tests := []struct {
		name string
		// cert issues b's certificate.
		cert   func(t *testing.T, td, evil *testCA) (leafCA *testCA, path string)
		expect string // a's Expect for b
		reason string // counted on a
	}{
		{
			name:   "untrusted trust domain",
			cert:   func(_ *testing.T, _, evil *testCA) (*testCA, string) { return evil, "/ns/ewgw/sa/ewgw" },
			expect: "td", reason: reasonVerify,
		},
		{
			name:   "unexpected id",
			cert:   func(_ *testing.T, td, _ *testCA) (*testCA, string) { return td, "/ns/other/sa/other" },
			expect: testID, reason: reasonPeerMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td, evil := newCA(t, "td"), newCA(t, "evil")
			pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
			leafCA, path := tt.cert(t, td, evil)
			ca := testConfig("east", td.leaf(t, "/ns/ewgw/sa/ewgw"), td)
			cb := testConfig("west", leafCA.leaf(t, path), td, evil)
			ca.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: tt.expect}}
			cb.Peers = []Peer{{Name: "east", Addrs: []string{pa.LocalAddr().String()}, Expect: "td"}}
			a, b := start(t, ca, pa), start(t, cb, pb)
			eventually(t, tt.reason+" counted", func() bool {
				return counter(t, a.reg, "ewgw_tunnel_handshake_failures_total", tt.reason) >= 2
			})
			if ps := a.tun.Peers()[0]; ps.Up || ps.Conns != 0 {
				t.Errorf("a sees west %+v", ps)
			}
			if ps := b.tun.Peers()[0]; ps.Up || ps.Conns != 0 {
				t.Errorf("b sees east %+v", ps)
			}
			if _, err := a.tun.Open(t.Context(), "west", sampleHeader(), nil); !errors.Is(err, ErrNoConnection) {
				t.Errorf("open: %v, want ErrNoConnection", err)
			}
		})
	}
}

func TestPeerRestart(t *testing.T) {
	a, b := pair(t, nil)
	cfgB := b.tun.cfg
	b.stop()
	waitPeer(t, a, "west", isDown)
	// A new run of west on the same address and key.
	cfgB.Registerer = nil
	b2 := start(t, cfgB, bindUDP(t, b.addr))
	ps := waitPeer(t, a, "west", isUp)
	if ps.LastRedial <= 0 {
		t.Errorf("LastRedial %v, want > 0", ps.LastRedial)
	}
	waitPeer(t, b2, "east", isUp)
	if n := counter(t, a.reg, "ewgw_tunnel_reconnects_total", ""); n != 1 {
		t.Errorf("reconnects %v, want 1", n)
	}
	h := metric(t, a.reg, "ewgw_tunnel_redial_duration_seconds", "").GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 {
		t.Errorf("redial histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
}

func TestConfigErrors(t *testing.T) {
	ca := newCA(t, "td")
	server, client := tlsConfigs(ca.leaf(t, "/x"), ca)
	noClientAuth := server.Clone()
	noClientAuth.ClientAuth = 0
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no server tls", cfg: Config{}, want: "ServerTLS is required"},
		{name: "no client auth", cfg: Config{ServerTLS: noClientAuth}, want: "require a client certificate"},
		{name: "duplicate peer", cfg: Config{ServerTLS: server, ClientTLS: client,
			Peers: []Peer{{Name: "p", Expect: "td"}, {Name: "p", Expect: "td"}}}, want: "duplicate"},
		{name: "bad expect", cfg: Config{ServerTLS: server,
			Peers: []Peer{{Name: "p", Expect: "https://td/x"}}}, want: "not a SPIFFE ID"},
		{name: "addrs without client tls", cfg: Config{ServerTLS: server,
			Peers: []Peer{{Name: "p", Expect: "td", Addrs: []string{"127.0.0.1:1"}}}}, want: "ClientTLS is nil"},
		{name: "backoff", cfg: Config{ServerTLS: server, RedialMin: time.Second, RedialMax: time.Millisecond}, want: "RedialMax"},
		{name: "short lease", cfg: Config{ServerTLS: server, Lease: param.MinLease - 1}, want: "lease"},
		{name: "negative lease", cfg: Config{ServerTLS: server, Lease: -time.Second}, want: "lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestExpect(t *testing.T) {
	tests := []struct {
		expect, id string
		want       bool
	}{
		{"td", "spiffe://td/ns/ewgw/sa/ewgw", true},
		{"spiffe://td", "spiffe://td/anything", true},
		{"td", "spiffe://other/ns/ewgw/sa/ewgw", false},
		{"spiffe://td/ns/ewgw/sa/ewgw", "spiffe://td/ns/ewgw/sa/ewgw", true},
		{"spiffe://td/ns/ewgw/sa/ewgw", "spiffe://td/ns/ewgw/sa/other", false},
		{"td", "https://td/x", false},
	}
	for _, tt := range tests {
		e, err := parseExpect(tt.expect)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.match(tt.id); got != tt.want {
			t.Errorf("%s matches %s: %v, want %v", tt.expect, tt.id, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 50 * time.Millisecond},
		{0, 0.5, 75 * time.Millisecond},
		{3, 0, 400 * time.Millisecond},
		{5, 0.99, hi/2 + time.Duration(0.99*float64(hi/2))},
		{200, 0, hi / 2},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, lo, hi, tt.r); got != tt.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tt.attempt, tt.r, got, tt.want)
		}
	}
}

// TestQlogDir: with QLOGDIR set, each peer connection writes a qlog trace
// there; a QLOGDIR that cannot be created costs a warning, not the process
// (quic-go's own tracer would exit).
func TestQlogDir(t *testing.T) {
	t.Run("usable", func(t *testing.T) {
		quicOnly(t)
		dir := filepath.Join(t.TempDir(), "qlog")
		t.Setenv("QLOGDIR", dir)
		pair(t, func(a, b *Config) { a.ConnsPerPeer, b.ConnsPerPeer = 1, 1 })
		// Two connections (one dialled each way), a trace at each end.
		for _, pattern := range []string{"*_client.sqlog", "*_server.sqlog"} {
			if got, _ := filepath.Glob(filepath.Join(dir, pattern)); len(got) != 2 {
				t.Errorf("%s: %d traces, want 2", pattern, len(got))
			}
		}
	})
	t.Run("unusable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("QLOGDIR", filepath.Join(file, "qlog"))
		a, _ := pair(t, func(a, b *Config) { a.ConnsPerPeer, b.ConnsPerPeer = 1, 1 })
		waitPeer(t, a, "west", isUp)
	})
}
