package tunnel

import (
	"context"
	"testing"
	"time"
)

// openSHA opens a stream from n to peer, exchanges a request with the
// sha service and closes it; it returns the stream's local and remote
// addresses.
func openSHA(t *testing.T, n *node, peer string) (local, remote string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	s, err := n.tun.Open(ctx, peer, Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := exchange(s, []byte("spread"), 1); err != nil {
		t.Fatal(err)
	}
	return s.LocalAddr().String(), s.RemoteAddr().String()
}

// TestSpreadReplicas: two replicas of west's gateway (two runs behind one
// peer name), east holding two connections to one and one to the other:
// short streams, which never overlap, split evenly between the replicas,
// and within a replica over its connections.
func TestSpreadReplicas(t *testing.T) {
	const streams = 20
	ca := newCA(t, "td")
	var west []*node
	for range 2 {
		cfg := testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
		cfg.Peers = []Peer{{Name: "east", Expect: testID}}
		cfg.Handler = HandlerFunc(testHandler)
		west = append(west, start(t, cfg, bindUDP(t, "127.0.0.1:0")))
	}
	cfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfg.ConnsPerPeer = 3 // slots 0 and 2 dial the first address, slot 1 the second
	cfg.Peers = []Peer{{Name: "west", Addrs: []string{west[0].addr, west[1].addr}, Expect: "td"}}
	east := start(t, cfg, bindUDP(t, "127.0.0.1:0"))
	waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Up && ps.Conns == 3 })

	perReplica, perConn := map[string]int{}, map[string]int{}
	for range streams {
		local, remote := openSHA(t, east, "west")
		perReplica[remote]++
		perConn[local]++
	}
	t.Logf("streams per replica %v, per connection %v", perReplica, perConn)
	for _, w := range west {
		if n := perReplica[w.addr]; n < streams/2-2 || n > streams/2+2 {
			t.Errorf("replica %s got %d of %d streams, want about half", w.addr, n, streams)
		}
	}
	if len(perConn) != 3 {
		t.Errorf("streams used %d of 3 connections", len(perConn))
	}
}

// TestSilentConnection: one of a peer's two connections goes silent (its
// path black-holed, nothing closed). Opens keep succeeding: one that
// lands on the silent connection moves to the live one after a few RTTs
// rather than waiting for the lease, and later ones pass the silent
// connection over; all before its lease runs out.
func TestSilentConnection(t *testing.T) {
	const lease = 10 * time.Second
	ca := newCA(t, "td")
	pb := bindUDP(t, "127.0.0.1:0")
	r := newRelay(t, pb)
	cfgA, cfgB := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	for _, c := range []*Config{&cfgA, &cfgB} {
		c.Lease, c.MaxIdleTimeout = lease, 30*time.Second
	}
	cfgA.ConnsPerPeer = 2 // slot 0 through the relay, slot 1 direct
	cfgA.Peers = []Peer{{Name: "west", Addrs: []string{r.addr(), pb.LocalAddr().String()}, Expect: "td"}}
	cfgB.Peers = []Peer{{Name: "east", Expect: testID}}
	cfgB.Handler = HandlerFunc(testHandler)
	a := start(t, cfgA, bindUDP(t, "127.0.0.1:0"))
	start(t, cfgB, pb)
	waitPeer(t, a, "west", func(ps PeerStatus) bool { return ps.Up && ps.Conns == 2 })
	t.Cleanup(func() { r.drop(false) }) // before the nodes stop: let shutdown's GOAWAY through

	r.drop(true)
	began := time.Now()
	var slowest time.Duration
	for range 20 {
		t0 := time.Now()
		openSHA(t, a, "west")
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("20 opens in %v with one connection silent, slowest %v", time.Since(began), slowest)
	if ps := a.tun.Peers()[0]; ps.Conns != 2 {
		t.Fatalf("%d connections: the silent one's lease ran out during the opens, so they did not show it was passed over", ps.Conns)
	}
	if n := counter(t, a.reg, "ewgw_tunnel_stream_open_retries_total", retryNoAnswer); n < 1 {
		t.Errorf("open retries{no_answer} = %v, want at least 1", n)
	}
}

// TestFrozenReplica: three replicas of west's gateway, each behind a path
// that can go silent as a frozen process does (SIGSTOP: nothing closes,
// nothing answers). Streams spread evenly over the three; with one frozen,
// no open fails, and the streams spread evenly over the two that live,
// well before the frozen one's lease runs out.
func TestFrozenReplica(t *testing.T) {
	const streams, lease = 60, 10 * time.Second
	ca := newCA(t, "td")
	var relays []*relay
	for range 3 {
		cfg := testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
		cfg.Peers = []Peer{{Name: "east", Expect: testID}}
		cfg.Handler = HandlerFunc(testHandler)
		cfg.Lease = lease
		pc := bindUDP(t, "127.0.0.1:0")
		start(t, cfg, pc)
		relays = append(relays, newRelay(t, pc))
	}
	cfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfg.ConnsPerPeer = 3 // slot i dials replica i
	cfg.Lease = lease
	cfg.Peers = []Peer{{Name: "west", Addrs: []string{relays[0].addr(), relays[1].addr(), relays[2].addr()}, Expect: "td"}}
	east := start(t, cfg, bindUDP(t, "127.0.0.1:0"))
	waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Up && ps.Conns == 3 })
	t.Cleanup(func() { relays[0].drop(false) }) // let shutdown's GOAWAY through

	spread := func(live []*relay) {
		t.Helper()
		per := map[string]int{}
		for range streams {
			_, remote := openSHA(t, east, "west") // fails the test on any failed open
			per[remote]++
		}
		t.Logf("streams per replica: %v", per)
		want := streams / len(live)
		for _, r := range live {
			if n := per[r.addr()]; n < want*8/10 || n > want*12/10 {
				t.Errorf("replica behind %s got %d of %d streams, want %d ±20%%", r.addr(), n, streams, want)
			}
		}
	}
	spread(relays)
	relays[0].drop(true)
	frozen := time.Now()
	spread(relays[1:])
	if took := time.Since(frozen); took >= lease {
		t.Errorf("the opens took %v, as long as the lease: the frozen replica was not passed over", took)
	}
}
