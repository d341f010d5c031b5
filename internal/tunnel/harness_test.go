package tunnel

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	testID       = "spiffe://td/ns/ewgw/sa/ewgw"
	waitTimeout  = 20 * time.Second
	pollInterval = 5 * time.Millisecond
)

// node is a running Tunnel on a real loopback UDP socket.
type node struct {
	tun    *Tunnel
	addr   string
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// bindUDP binds a loopback UDP socket; addr may name a port to reuse.
func bindUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// testConfig returns a config for a node of cluster with the given leaf,
// trusting trust, with fast redials.
func testConfig(cluster string, leaf tls.Certificate, trust ...*testCA) Config {
	server, client := tlsConfigs(leaf, trust...)
	key := [32]byte{byte(len(cluster))}
	copy(key[1:], cluster)
	return Config{
		Cluster: cluster, Region: cluster + "-region", Zone: cluster + "-zone", Version: "test",
		ServerTLS: server, ClientTLS: client,
		StatelessResetKey: &key,
		RedialMin:         10 * time.Millisecond,
		RedialMax:         200 * time.Millisecond,
		HandshakeTimeout:  2 * time.Second,
		DrainTimeout:      10 * time.Second,
	}
}

// start runs a Tunnel for cfg on pc until the test ends.
func start(t *testing.T, cfg Config, pc *net.UDPConn) *node {
	t.Helper()
	n := &node{reg: prometheus.NewRegistry(), addr: pc.LocalAddr().String(), done: make(chan error, 1)}
	cfg.Registerer = n.reg
	tun, err := New(cfg)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	n.tun = tun
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- tun.Serve(ctx, pc) }()
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down and waits for Serve; calling it twice is fine.
func (n *node) stop() {
	n.cancel()
	if err, ok := <-n.done; ok {
		close(n.done)
		if err != nil {
			panic(err)
		}
	}
}

// waitPeer waits, on the Changes channel, until cond holds for the named
// peer's status.
func waitPeer(t *testing.T, n *node, name string, cond func(PeerStatus) bool) PeerStatus {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		for _, ps := range n.tun.Peers() {
			if ps.Name == name && cond(ps) {
				return ps
			}
		}
		select {
		case <-n.tun.Changes():
		case <-timer.C:
			t.Fatalf("peer %s: condition not met; status %+v", name, n.tun.Peers())
		}
	}
}

func isUp(ps PeerStatus) bool   { return ps.Up }
func isDown(ps PeerStatus) bool { return !ps.Up }

// eventually polls cond, for state that has no notification (metrics).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// metric returns the named metric with the given label value (any label),
// or nil.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m
			}
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m
				}
			}
		}
	}
	return nil
}

func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	if m := metric(t, reg, name, label); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

// pair starts two peered nodes, a (cluster east) and b (cluster west), and
// waits until each sees the other up on every connection both dial, so no
// hello is still in flight when a test starts. edit may change either
// config.
func pair(t *testing.T, edit func(a, b *Config)) (a, b *node) {
	t.Helper()
	ca := newCA(t, "td")
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	ca1, ca2 := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	ca1.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: "td"}}
	ca2.Peers = []Peer{{Name: "east", Addrs: []string{pa.LocalAddr().String()}, Expect: testID}}
	if edit != nil {
		edit(&ca1, &ca2)
	}
	a, b = start(t, ca1, pa), start(t, ca2, pb)
	conns := ca1.withDefaults().ConnsPerPeer + ca2.withDefaults().ConnsPerPeer
	all := func(ps PeerStatus) bool { return ps.Up && ps.Conns == conns }
	waitPeer(t, a, "west", all)
	waitPeer(t, b, "east", all)
	return a, b
}

// relay forwards UDP datagrams between one client and a server through two
// loopback sockets, and can black-hole both directions at once: a path
// that goes silent without either end seeing a close, as when a link or a
// NAT mapping dies.
type relay struct {
	front    *net.UDPConn // the client sends here
	back     *net.UDPConn // the server sees the client here
	server   *net.UDPAddr
	client   atomic.Pointer[net.UDPAddr] // the last client address seen
	dropping atomic.Bool
	wg       sync.WaitGroup
}

// newRelay starts a relay to server until the test ends.
func newRelay(t *testing.T, server *net.UDPConn) *relay {
	t.Helper()
	r := &relay{front: bindUDP(t, "127.0.0.1:0"), back: bindUDP(t, "127.0.0.1:0"),
		server: server.LocalAddr().(*net.UDPAddr)}
	r.wg.Go(func() { r.pump(r.front, r.back, r.toServer) })
	r.wg.Go(func() { r.pump(r.back, r.front, r.toClient) })
	t.Cleanup(func() {
		r.front.Close()
		r.back.Close()
		r.wg.Wait()
	})
	return r
}

// addr is the address the client dials.
func (r *relay) addr() string { return r.front.LocalAddr().String() }

// drop starts or stops dropping every datagram, both ways.
func (r *relay) drop(on bool) { r.dropping.Store(on) }

func (r *relay) toServer(from *net.UDPAddr) *net.UDPAddr {
	r.client.Store(from)
	return r.server
}

func (r *relay) toClient(from *net.UDPAddr) *net.UDPAddr {
	if from.AddrPort() != r.server.AddrPort() {
		return nil
	}
	return r.client.Load()
}

// pump forwards what in receives to the address dst picks, until in closes.
func (r *relay) pump(in, out *net.UDPConn, dst func(from *net.UDPAddr) *net.UDPAddr) {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := in.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if to := dst(from); to != nil && !r.dropping.Load() {
			_, _ = out.WriteToUDP(buf[:n], to) // UDP: a lost datagram is QUIC's to recover
		}
	}
}
