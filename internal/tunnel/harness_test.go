package tunnel

import (
	"context"
	"crypto/tls"
	"net"
	"os"
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

// bindUDP binds a loopback UDP socket; addr may name a port to reuse. It
// also binds the same port for TCP, which start takes (bindTCP), so a
// node's two transports share a port number as a gateway's do.
func bindUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		pc, err := net.ListenUDP("udp4", ua)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			reserved.Store(pc.LocalAddr().String(), ln)
			t.Cleanup(func() { ln.Close() })
			return pc
		}
		if ua.Port != 0 || try == 20 {
			pc.Close()
			t.Fatal(err)
		}
		pc.Close() // the port is taken for TCP: try another
	}
}

// reserved holds the TCP listeners bindUDP bound, by address.
var reserved sync.Map

// bindTCP returns the TCP listener on the port of pc that bindUDP bound.
func bindTCP(t *testing.T, pc *net.UDPConn) net.Listener {
	t.Helper()
	if ln, ok := reserved.LoadAndDelete(pc.LocalAddr().String()); ok {
		return ln.(net.Listener)
	}
	ln, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	return ln
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
		Transport:         testTransport,
		DrainTimeout:      10 * time.Second,
	}
}

// testTransport is the transport of testConfig: EWGW_TUNNEL_TRANSPORT
// runs the suite on another one (tcp, quic), auto by default.
var testTransport = Transport(os.Getenv("EWGW_TUNNEL_TRANSPORT"))

// quicOnly skips a test of QUIC itself when the suite runs on TCP.
func quicOnly(t *testing.T) {
	t.Helper()
	if testTransport == TransportTCP {
		t.Skip("tests QUIC itself")
	}
}

// start runs a Tunnel for cfg on pc, and a TCP listener on its port, until
// the test ends.
func start(t *testing.T, cfg Config, pc *net.UDPConn) *node {
	t.Helper()
	return startOn(t, cfg, pc, bindTCP(t, pc))
}

// startOn runs a Tunnel for cfg on pc and ln until the test ends; pc
// may be nil (a TCP-only node) or ln (a QUIC-only one).
func startOn(t *testing.T, cfg Config, pc net.PacketConn, ln net.Listener) *node {
	t.Helper()
	var packet net.PacketConn
	var addr string
	if pc != nil {
		packet, addr = pc, pc.LocalAddr().String()
	} else {
		addr = ln.Addr().String()
	}
	n := &node{reg: prometheus.NewRegistry(), addr: addr, done: make(chan error, 1)}
	cfg.Registerer = n.reg
	tun, err := New(cfg)
	if err != nil {
		if pc != nil {
			pc.Close()
		}
		if ln != nil {
			ln.Close()
		}
		t.Fatal(err)
	}
	n.tun = tun
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- tun.Serve(ctx, packet, ln) }()
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
	return waitPeerWithin(t, n, name, waitTimeout, cond)
}

// waitPeerWithin is waitPeer with its own time limit.
func waitPeerWithin(t *testing.T, n *node, name string, within time.Duration, cond func(PeerStatus) bool) PeerStatus {
	t.Helper()
	timer := time.NewTimer(within)
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
// loopback sockets, and TCP connections on the same port numbers, and can
// black-hole both directions at once: a path that goes silent without
// either end seeing a close, as when a link or a NAT mapping dies.
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
	ln := bindTCP(t, r.front)
	r.wg.Go(func() { r.relayTCP(ln) })
	t.Cleanup(func() {
		r.front.Close()
		r.back.Close()
		ln.Close()
		r.wg.Wait()
	})
	return r
}

// relayTCP relays each TCP connection ln accepts to the server's TCP port
// until ln closes; black-holed bytes are read and dropped, so neither end
// sees a close or a full window.
func (r *relay) relayTCP(ln net.Listener) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		front, err := ln.Accept()
		if err != nil {
			return
		}
		back, err := net.Dial("tcp4", r.server.String())
		if err != nil {
			front.Close()
			continue
		}
		conns = append(conns, front, back)
		r.wg.Go(func() { r.copyTCP(back, front) })
		r.wg.Go(func() { r.copyTCP(front, back) })
	}
}

// copyTCP copies src to dst; a close while black-holing does not get
// through either.
func (r *relay) copyTCP(dst, src net.Conn) {
	buf := make([]byte, 1<<16)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.dropping.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				return
			}
		}
		if err != nil {
			if !r.dropping.Load() {
				dst.Close()
			}
			return
		}
	}
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
