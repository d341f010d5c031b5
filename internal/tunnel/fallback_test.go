package tunnel

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpGate is a UDP socket on a network that can block UDP: while blocked,
// every datagram is dropped both ways, and TCP on the same port still
// gets through. It hides *net.UDPConn's batch and OOB methods, so quic-go
// reads and writes through it.
type udpGate struct {
	pc      *net.UDPConn
	blocked atomic.Bool
}

func (g *udpGate) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := g.pc.ReadFrom(b)
		if err != nil || !g.blocked.Load() {
			return n, a, err
		}
	}
}

func (g *udpGate) WriteTo(b []byte, a net.Addr) (int, error) {
	if g.blocked.Load() {
		return len(b), nil
	}
	return g.pc.WriteTo(b, a)
}

func (g *udpGate) Close() error                       { return g.pc.Close() }
func (g *udpGate) LocalAddr() net.Addr                { return g.pc.LocalAddr() }
func (g *udpGate) SetDeadline(t time.Time) error      { return g.pc.SetDeadline(t) }
func (g *udpGate) SetReadDeadline(t time.Time) error  { return g.pc.SetReadDeadline(t) }
func (g *udpGate) SetWriteDeadline(t time.Time) error { return g.pc.SetWriteDeadline(t) }

// gatedPair starts west behind a udpGate, blocked or not, and east, which
// dials it on TransportAuto.
func gatedPair(t *testing.T, blocked bool) (east, west *node, gate *udpGate) {
	t.Helper()
	if testTransport != "" && testTransport != TransportAuto {
		t.Skip("tests the automatic choice")
	}
	ca := newCA(t, "td")
	pw := bindUDP(t, "127.0.0.1:0")
	gate = &udpGate{pc: pw}
	gate.blocked.Store(blocked)
	cfgE, cfgW := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfgE.ConnsPerPeer = 2
	cfgE.ProbeMin, cfgE.ProbeMax = 100*time.Millisecond, 500*time.Millisecond
	cfgE.Peers = []Peer{{Name: "west", Addrs: []string{pw.LocalAddr().String()}, Expect: "td"}}
	cfgW.Peers = []Peer{{Name: "east", Expect: testID}} // west never dials: UDP is blocked one way only
	cfgW.Handler = HandlerFunc(testHandler)
	west = startOn(t, cfgW, gate, bindTCP(t, pw))
	east = start(t, cfgE, bindUDP(t, "127.0.0.1:0"))
	return east, west, gate
}

// openOver opens a svcSHA stream to west and checks its reply; it returns
// the transport that carried it.
func openOver(ctx context.Context, n *node) (Transport, error) {
	s, err := n.tun.Open(ctx, "west", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		return "", err
	}
	defer s.Close()
	if err := exchange(s, []byte("fallback"), 1); err != nil {
		return "", err
	}
	if _, ok := s.LocalAddr().(*net.TCPAddr); ok {
		return TransportTCP, nil
	}
	return TransportQUIC, nil
}

// slowStream opens a svcSHA stream and writes its request in pieces over
// d, then checks the reply, SHA-256 both ways.
func slowStream(ctx context.Context, n *node, seed uint64, d time.Duration) error {
	const pieces, kib = 20, 256
	s, err := n.tun.Open(ctx, "west", Header{Namespace: "default", Name: svcSHA, Port: kib}, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	req := payload(seed, pieces*(16<<10))
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for i := range pieces {
			if _, werr = s.Write(req[i*(16<<10) : (i+1)*(16<<10)]); werr != nil {
				return
			}
			time.Sleep(d / pieces)
		}
		werr = s.CloseWrite()
	})
	err = readReply(s, req, kib)
	wg.Wait()
	return errors.Join(err, werr)
}

// TestFallbackToTCP: with UDP blocked between the gateways, west is up
// and the first stream through it has succeeded, over TCP, within 2 s of
// starting; once UDP gets through
// again new streams move to QUIC, and streams live on TCP during the move
// complete with their bytes checked both ways.
func TestFallbackToTCP(t *testing.T) {
	began := time.Now()
	east, _, gate := gatedPair(t, true)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	waitPeer(t, east, "west", isUp)
	tr, err := openOver(ctx, east)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first stream %v after start, over %s", took, tr)
	if tr != TransportTCP || took > 2*time.Second {
		t.Errorf("first stream over %s after %v, want TCP within 2s", tr, took)
	}
	if n := counter(t, east.reg, "ewgw_tunnel_transport_fallbacks_total", fallbackTimeout); n < 1 {
		t.Errorf("fallbacks{%s} = %v", fallbackTimeout, n)
	}

	// Streams live on TCP while UDP comes back.
	var g sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		g.Go(func() { errs[i] = slowStream(t.Context(), east, uint64(i), 2*time.Second) })
	}
	time.Sleep(200 * time.Millisecond)
	gate.blocked.Store(false)
	unblocked := time.Now()
	ps := waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Up && ps.Conns > ps.TCPConns })
	t.Logf("a QUIC connection %v after UDP came back (%d of %d connections on TCP)",
		time.Since(unblocked), ps.TCPConns, ps.Conns)
	if tr, err := openOver(ctx, east); err != nil || tr != TransportQUIC {
		t.Errorf("new stream after the move: %v over %s, want QUIC", err, tr)
	}
	g.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("stream %d live across the move: %v", i, err)
		}
	}
	waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Up && ps.TCPConns == 0 })
	if n := counter(t, east.reg, "ewgw_tunnel_transport_upgrades_total", ""); n < 1 {
		t.Errorf("upgrades = %v", n)
	}
}

// TestFallbackMidTraffic: UDP blocked while streams flow over QUIC. New
// streams succeed over TCP within 2 s of the block; what happens to the
// streams live on QUIC at that moment is logged (they stall until the
// lease closes their connection, then fail).
func TestFallbackMidTraffic(t *testing.T) {
	east, _, gate := gatedPair(t, false)
	waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Up && ps.Conns == 2 && ps.TCPConns == 0 })
	live := make(chan error, 2)
	for i := range 2 {
		go func() { live <- slowStream(t.Context(), east, uint64(i), 3*time.Second) }()
	}
	time.Sleep(100 * time.Millisecond)
	gate.blocked.Store(true)
	blocked := time.Now()
	var failed int
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		tr, err := openOver(ctx, east)
		cancel()
		if err != nil {
			failed++
			t.Logf("open %v after the block failed: %v", time.Since(blocked), err)
			if time.Since(blocked) > waitTimeout {
				t.Fatal("no stream over TCP")
			}
			continue
		}
		if tr == TransportTCP {
			break
		}
	}
	took := time.Since(blocked)
	t.Logf("first new stream over TCP %v after UDP was blocked; %d opens failed meanwhile", took, failed)
	if took > 2*time.Second || failed > 0 {
		t.Errorf("new streams over TCP after %v with %d failures, want within 2s and none", took, failed)
	}
	for range 2 {
		err := <-live
		t.Logf("a stream live on QUIC when UDP was blocked: %v", err)
	}
	if n := counter(t, east.reg, "ewgw_tunnel_transport_fallbacks_total", fallbackSilent); n < 1 {
		t.Errorf("fallbacks{%s} = %v", fallbackSilent, n)
	}
}

// TestTransportMismatch: a QUIC-only gateway and a TCP-only one cannot
// peer, and each says why: the one dialled on the transport it does not
// use closes with CodeWrongTransport.
func TestTransportMismatch(t *testing.T) {
	ca := newCA(t, "td")
	pw := bindUDP(t, "127.0.0.1:0")
	cfgE, cfgW := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfgE.Transport, cfgW.Transport = TransportTCP, TransportQUIC
	cfgE.ConnsPerPeer = 1
	cfgW.ConnsPerPeer = 1
	pe := bindUDP(t, "127.0.0.1:0")
	cfgE.Peers = []Peer{{Name: "west", Addrs: []string{pw.LocalAddr().String()}, Expect: "td"}}
	cfgW.Peers = []Peer{{Name: "east", Addrs: []string{pe.LocalAddr().String()}, Expect: "td"}}
	west := start(t, cfgW, pw)
	east := start(t, cfgE, pe)
	hasCode := func(ps PeerStatus) bool { // a busy machine may time a handshake out first
		_, ok := remoteCode(ps.LastError)
		return ok
	}
	ps := pollPeer(t, east, "west", hasCode)
	if code, ok := remoteCode(ps.LastError); !ok || code != CodeWrongTransport {
		t.Errorf("TCP-only east's last error %v, want the peer's %v", ps.LastError, CodeWrongTransport)
	}
	t.Logf("east (tcp) says: %v", ps.LastError)
	if ps.Up {
		t.Error("east is up with a QUIC-only peer")
	}
	ps = pollPeer(t, west, "east", hasCode)
	if code, _ := remoteCode(ps.LastError); code != CodeWrongTransport {
		t.Errorf("QUIC-only west's last error %v, want the peer's %v", ps.LastError, CodeWrongTransport)
	}
	t.Logf("west (quic) says: %v", ps.LastError)
	for _, n := range []*node{east, west} {
		if c := counter(t, n.reg, "ewgw_tunnel_handshake_failures_total", reasonWrongTransport); c < 1 {
			t.Errorf("%v wrong-transport handshakes counted", c)
		}
	}
}
