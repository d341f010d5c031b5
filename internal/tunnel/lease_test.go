package tunnel

import (
	"github.com/ewgw/ewgw/internal/model"
	"reflect"
	"testing"
	"time"
)

const (
	controlReceived  = "ewgw_tunnel_control_messages_received_total"
	leaseExpirations = "ewgw_tunnel_lease_expirations_total"
)

// TestLeaseExpiry cuts the path between two peers without closing
// anything: only the lease can notice, since the idle timeout is 30 s away
// and keepalives never get through.
func TestLeaseExpiry(t *testing.T) {
	const (
		lease     = 400 * time.Millisecond
		margin    = 2 * time.Second // scheduling slack, still far below the idle timeout
		refreshes = 16              // four leases' worth at one per Lease/4
	)
	exports := []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "cart"}, Ports: []ExportPort{{Port: 80, Ready: 2}}}}
	a, b, r := relayPair(t, lease, exports)
	hasExports := func(ps PeerStatus) bool { return ps.Up && reflect.DeepEqual(ps.Exports, exports) }
	waitPeer(t, a, "west", hasExports)

	// Idle, but the path forwards: refreshes keep the connection up.
	from := counter(t, a.reg, controlReceived, "lease")
	eventually(t, "lease refreshes", func() bool { return counter(t, a.reg, controlReceived, "lease") >= from+refreshes })
	if ps := a.tun.Peers()[0]; !ps.Up || ps.Conns != 1 {
		t.Fatalf("idle peer after %d refreshes: %+v", refreshes, ps)
	}
	for _, n := range []*node{a, b} {
		if e, rc := counter(t, n.reg, leaseExpirations, ""), counter(t, n.reg, "ewgw_tunnel_reconnects_total", ""); e+rc != 0 {
			t.Fatalf("idle peer: %v lease expirations, %v reconnects", e, rc)
		}
	}

	r.drop(true)
	dropped := time.Now()
	ps := waitPeer(t, a, "west", func(ps PeerStatus) bool { return !ps.Up && len(ps.Exports) == 0 })
	took := time.Since(dropped)
	t.Logf("west down and withdrawn %v after the path went silent (lease %v)", took, lease)
	if took > lease+margin {
		t.Errorf("west down after %v, want within %v", took, lease+margin)
	}
	if code, ok := closeCode(ps.LastError); !ok || code != CodeLeaseExpired {
		t.Errorf("west's last error %v, want a local close with %v", ps.LastError, CodeLeaseExpired)
	}
	if _, remote := remoteCode(ps.LastError); remote {
		t.Errorf("west's last error %v, want a local close with %v", ps.LastError, CodeLeaseExpired)
	}
	waitPeer(t, b, "east", func(ps PeerStatus) bool { return !ps.Up && ps.Conns == 0 })
	if n := counter(t, a.reg, leaseExpirations, "west"); n < 1 {
		t.Errorf("a counted %v lease expirations of west", n)
	}
	if n := counter(t, b.reg, leaseExpirations, "east"); n < 1 {
		t.Errorf("b counted %v lease expirations of east", n)
	}

	// The path heals: a redials, and west's exports are back.
	r.drop(false)
	waitPeer(t, a, "west", hasExports)
}

// relayPair starts east (a) and west (b) with the given lease and a 30 s
// idle timeout; a dials b once, through a relay, and b never dials.
func relayPair(t *testing.T, lease time.Duration, bExports []Export) (a, b *node, r *relay) {
	t.Helper()
	ca := newCA(t, "td")
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	r = newRelay(t, pb)
	cfgA, cfgB := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	for _, c := range []*Config{&cfgA, &cfgB} {
		c.Lease, c.MaxIdleTimeout, c.ConnsPerPeer = lease, 30*time.Second, 1
	}
	cfgA.Peers = []Peer{{Name: "west", Addrs: []string{r.addr()}, Expect: "td"}}
	cfgB.Peers = []Peer{{Name: "east", Expect: testID}}
	cfgB.Exports = bExports
	return start(t, cfgA, pa), start(t, cfgB, pb), r
}

// TestDeltaBaseMismatch: a delta that does not start from the receiver's
// generation on that connection closes the connection with CodeProtocol.
func TestDeltaBaseMismatch(t *testing.T) {
	a, _ := pair(t, nil)
	c := a.tun.peers["west"].pick(nil)
	bogus := message{kind: kindDelta, delta: delta{Base: 1000, Gen: 1001}}
	if err := c.send(bogus, time.Second); err != nil {
		t.Fatal(err)
	}
	ps := waitPeer(t, a, "west", func(ps PeerStatus) bool { return ps.LastError != nil })
	if code, ok := remoteCode(ps.LastError); !ok || code != CodeProtocol {
		t.Fatalf("west's last error %v, want a remote close with %v", ps.LastError, CodeProtocol)
	}
}

// TestSilence: only on-time ticks with no packet received count toward
// the end of a lease, and anything heard starts the count over.
func TestSilence(t *testing.T) {
	s := silence{packets: 10}
	steps := []struct {
		name    string
		late    bool
		packets uint64
		want    int
	}{
		{"quiet tick", false, 10, 1},
		{"quiet tick", false, 10, 2},
		{"packets arrived (data, acks, flow control)", false, 11, 0},
		{"quiet tick", false, 11, 1},
		{"quiet tick", false, 11, 2},
		{"late tick: this side stalled", true, 11, 0},
		{"quiet tick", false, 11, 1},
		{"quiet tick", false, 11, 2},
		{"quiet tick", false, 11, 3},
		{"quiet tick: a lease of silence", false, 11, leaseTicks},
	}
	for i, st := range steps {
		if got := s.tick(st.late, st.packets); got != st.want {
			t.Fatalf("step %d (%s): %d silent ticks, want %d", i, st.name, got, st.want)
		}
	}
}
