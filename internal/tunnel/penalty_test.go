package tunnel

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestPenaltySchedule: a penalty starts at penaltyFirst, doubles with each
// violation after one ended, stops at penaltyMax, ignores violations
// during it, and starts over after penaltyForget without one.
func TestPenaltySchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		after []time.Duration // each violation's time, from the previous penalty's end
		want  time.Duration   // the last penalty's length
		began bool            // whether the last violation began it
	}{
		{name: "first", after: []time.Duration{0}, want: penaltyFirst, began: true},
		{name: "repeat doubles", after: []time.Duration{0, 0, time.Minute}, want: 4 * penaltyFirst, began: true},
		{name: "capped", after: []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, want: penaltyMax, began: true},
		{name: "during a penalty", after: []time.Duration{0, 0, -penaltyFirst}, want: 2 * penaltyFirst},
		{name: "forgotten", after: []time.Duration{0, 0, 0, penaltyForget}, want: penaltyFirst, began: true},
		{name: "not yet forgotten", after: []time.Duration{0, 0, penaltyForget - time.Second}, want: 4 * penaltyFirst, began: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pn penalty
			end := t0
			var began bool
			for _, d := range tt.after {
				now := end.Add(d)
				var until time.Time
				until, began = pn.impose(now, refuseServices)
				if began && until.Sub(now) != pn.length {
					t.Fatalf("penalty until %v at %v, want %v later", until, now, pn.length)
				}
				end = until
			}
			if pn.length != tt.want || began != tt.began {
				t.Errorf("penalty %v (began %v), want %v (began %v)", pn.length, began, tt.want, tt.began)
			}
		})
	}
}

// TestHostilePenalty: a peer that floods catalogue deltas past the budget
// is penalised. Its reconnects within the penalty are closed with
// CodePenalty before the victim reads a hello; the next violation, after
// the penalty ended, doubles it; once it ended the peer connects again.
// An honest peer's streams go through throughout.
func TestHostilePenalty(t *testing.T) {
	clock := newFakeClock()
	r := newVictim(t, func(c *Config) {
		c.MaxImportedServices = 100
		c.now = clock.now
		withNorth(c)
	})
	north := r.startNorth(t)

	flood := func() {
		t.Helper()
		h := r.dial(t)
		if err := h.hello(westHello(services("a", 0, 10))); err != nil {
			t.Fatal(err)
		}
		for i, up := range [][]Export{services("a", 10, 60), services("a", 70, 60)} {
			gen := uint64(i + 1)
			_ = h.send(message{kind: kindDelta, delta: delta{Base: gen, Gen: gen + 1, Upserts: up}})
		}
		if code := h.closedWith(); code != CodeLimit {
			t.Fatalf("flood closed with %v, want %v", code, CodeLimit)
		}
	}
	hellos := func() float64 { return counter(t, r.victim.reg, controlReceived, "hello") }
	refused := func() {
		t.Helper()
		before := hellos()
		if code := mustRemoteCode(t, r.dial(t).hello(westHello(nil))); code != CodePenalty {
			t.Fatalf("reconnect refused with %v, want %v", code, CodePenalty)
		}
		if n := hellos(); n != before {
			t.Errorf("victim read %v hellos from a penalised peer", n-before)
		}
	}
	wantPenalty := func(n float64, length time.Duration) {
		t.Helper()
		if got := counter(t, r.victim.reg, "ewgw_tunnel_peer_penalties_total", "west"); got != n {
			t.Errorf("penalties{west} = %v, want %v", got, n)
		}
		if pn := r.victim.tun.peers["west"].penalty(); pn.length != length || !pn.until.Equal(clock.now().Add(length)) {
			t.Errorf("penalty %v until %v, want %v from now", pn.length, pn.until, length)
		}
	}
	honest := func() {
		t.Helper()
		s, err := north.tun.Open(t.Context(), "east", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := exchange(s, []byte("honest"), 1); err != nil {
			t.Fatal(err)
		}
	}

	flood()
	wantPenalty(1, penaltyFirst)
	for range 3 {
		refused()
	}
	honest()
	if n := counter(t, r.victim.reg, "ewgw_tunnel_peer_refusals_total", refusePenalised); n != 3 {
		t.Errorf("refusals{%s} = %v, want 3", refusePenalised, n)
	}
	ps := waitPeer(t, r.victim, "west", func(ps PeerStatus) bool { return ps.LastError != nil && ps.Conns == 0 })
	var pe *PolicyError
	if !errors.As(ps.LastError, &pe) || pe.Reason != refusePenalised || !strings.Contains(pe.Error(), "until 2026-01-01T00:00:01Z") {
		t.Errorf("west's last error %v, want it penalised until 00:00:01", ps.LastError)
	}

	clock.advance(penaltyFirst)
	flood()
	wantPenalty(2, 2*penaltyFirst)
	clock.advance(penaltyFirst)
	refused()

	clock.advance(penaltyFirst)
	if err := r.dial(t).hello(westHello(services("a", 0, 10))); err != nil {
		t.Fatalf("after the penalty: %v", err)
	}
	waitPeer(t, r.victim, "west", isUp)
	honest()
}

// TestPenaltyDial: an honest peer whose catalogue is over this side's
// budget is penalised like any other. This side does not dial it while
// the penalty lasts, and dials it again after.
func TestPenaltyDial(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, "td")
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	ecfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	ecfg.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: hostileID}}
	ecfg.ConnsPerPeer = 1
	ecfg.MaxImportedServices = 5
	ecfg.now = clock.now
	wcfg := testConfig("west", ca.leaf(t, "/ns/west/sa/ewgw"), ca)
	wcfg.Peers = []Peer{{Name: "east", Expect: testID}} // west never dials
	wcfg.Exports = services("a", 0, 6)
	east, west := start(t, ecfg, pa), start(t, wcfg, pb)

	dials := func() float64 { return counter(t, west.reg, controlReceived, "hello") }
	penalties := func() float64 { return counter(t, east.reg, "ewgw_tunnel_peer_penalties_total", "west") }
	eventually(t, "west penalised", func() bool { return penalties() == 1 })
	if n := dials(); n != 1 {
		t.Fatalf("east dialled west %v times, want 1", n)
	}
	// The error is recorded just after the penalty is counted.
	eventually(t, "west's last error saying it is penalised", func() bool {
		err := east.tun.Peers()[0].LastError
		return err != nil && strings.Contains(err.Error(), "penalised until")
	})
	// Without the penalty, east would redial within RedialMax (200 ms);
	// the clock stands still, so the penalty never ends.
	<-time.After(5 * ecfg.RedialMax)
	if n := dials(); n != 1 {
		t.Fatalf("east dialled west %v times during the penalty, want 1", n)
	}

	clock.advance(penaltyFirst)
	eventually(t, "east dials west again", func() bool { return dials() == 2 && penalties() == 2 })
	if pn := east.tun.peers["west"].penalty(); pn.length != 2*penaltyFirst {
		t.Errorf("second penalty %v, want %v", pn.length, 2*penaltyFirst)
	}
}

// westSocket is one UDP socket of the scripted peer west: dials from it
// share its address and port.
func (r *rig) westSocket(t *testing.T, addr string) *quic.Transport {
	t.Helper()
	tr := &quic.Transport{Conn: bindUDP(t, addr)}
	t.Cleanup(func() { tr.Close(); tr.Conn.Close() })
	return tr
}

// dialOn connects to the victim as west from tr.
func (r *rig) dialOn(t *testing.T, tr *quic.Transport) (*hostile, error) {
	t.Helper()
	_, client := tlsConfigs(r.ca.leaf(t, "/ns/west/sa/ewgw"), r.ca)
	client.NextProtos = []string{ALPN}
	ua, err := net.ResolveUDPAddr("udp4", r.victim.addr)
	if err != nil {
		t.Fatal(err)
	}
	qc, err := tr.Dial(t.Context(), ua, client, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return &hostile{t: t, sess: quicSession{qc}}, nil
}

// TestPenalisedSource: once west is penalised, an Initial from the
// address and port it connected from is refused before any cryptography,
// and so is one from any port of an address that no peer in good standing
// uses; from an address it shares with such a peer (north), a new port
// still gets the handshake and then CodePenalty. North is served
// throughout, and once the penalty ends west connects again.
func TestPenalisedSource(t *testing.T) {
	quicOnly(t)
	clock := newFakeClock()
	r := newVictim(t, func(c *Config) {
		c.MaxImportedServices = 100
		c.now = clock.now
		withNorth(c)
	})
	north := r.startNorth(t)

	own := r.westSocket(t, "127.0.0.2:0") // an address only west uses
	h, err := r.dialOn(t, own)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.hello(westHello(services("a", 0, 10))); err != nil {
		t.Fatal(err)
	}
	_ = h.send(message{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Upserts: services("a", 10, 100)}})
	if code := h.closedWith(); code != CodeLimit {
		t.Fatalf("flood closed with %v, want %v", code, CodeLimit)
	}

	refused := func(what string, tr *quic.Transport) {
		t.Helper()
		_, err := r.dialOn(t, tr)
		if te := (*quic.TransportError)(nil); !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused || !te.Remote {
			t.Fatalf("%s: %v, want CONNECTION_REFUSED", what, err)
		}
	}
	refused("same address and port", own)
	refused("another port of its address", r.westSocket(t, "127.0.0.2:0"))
	if n := counter(t, r.victim.reg, "ewgw_tunnel_handshakes_refused_total", admitPenalised); n < 2 {
		t.Errorf("handshakes refused{%s} = %v, want at least 2", admitPenalised, n)
	}
	if n := counter(t, r.victim.reg, "ewgw_tunnel_peer_refusals_total", refusePenalised); n != 0 {
		t.Errorf("%v penalised connections refused after a handshake, want none", n)
	}

	shared := r.westSocket(t, "127.0.0.1:0") // north's address
	h, err = r.dialOn(t, shared)
	if err != nil {
		t.Fatalf("from a shared address: %v", err)
	}
	if code := mustRemoteCode(t, h.hello(westHello(nil))); code != CodePenalty {
		t.Fatalf("from a shared address: refused with %v, want %v", code, CodePenalty)
	}
	refused("same port of the shared address", shared)

	s, err := north.tun.Open(t.Context(), "east", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := exchange(s, []byte("honest"), 1); err != nil {
		t.Fatal(err)
	}

	clock.advance(penaltyFirst)
	for _, tr := range []*quic.Transport{own, shared} {
		h, err := r.dialOn(t, tr)
		if err != nil {
			t.Fatalf("after the penalty: %v", err)
		}
		if err := h.hello(westHello(nil)); err != nil {
			t.Fatalf("after the penalty: %v", err)
		}
		// The first is on trial: the next waits for probation to end.
		eventually(t, "probation over", func() bool { return !r.victim.tun.peers["west"].penalty().probation })
	}
}

// TestProbation: after a penalty ends, the peer may have one connection at
// a time until one kept to the rules for probationClean after its hello.
// A second connection while the first is on trial is closed with
// CodePenalty (probation) before its hello is read, even once the trial's
// hello passed; after probationClean the peer's connections are admitted
// again.
func TestProbation(t *testing.T) {
	clock := newFakeClock()
	r := newVictim(t, func(c *Config) {
		c.MaxImportedServices = 100
		c.now = clock.now
	})
	west := r.victim.tun.peers["west"]
	if code := mustRemoteCode(t, r.dial(t).hello(westHello(services("a", 0, 200)))); code != CodeLimit {
		t.Fatalf("flood refused with %v, want %v", code, CodeLimit)
	}
	clock.advance(penaltyFirst)

	trial := r.dial(t)
	eventually(t, "the first connection on trial", func() bool { return west.penalty().trials == 1 })
	hellos := counter(t, r.victim.reg, controlReceived, "hello")
	if code := mustRemoteCode(t, r.dial(t).hello(westHello(nil))); code != CodePenalty {
		t.Fatalf("a second connection during the trial: %v, want %v", code, CodePenalty)
	}
	if n := counter(t, r.victim.reg, controlReceived, "hello") - hellos; n != 0 {
		t.Errorf("the victim read %v hellos from the second connection", n)
	}
	if n := counter(t, r.victim.reg, "ewgw_tunnel_peer_refusals_total", refuseProbation); n != 1 {
		t.Errorf("refusals{%s} = %v, want 1", refuseProbation, n)
	}
	if err := trial.hello(westHello(services("a", 0, 10))); err != nil {
		t.Fatalf("the trial's honest hello: %v", err)
	}
	if code := mustRemoteCode(t, r.dial(t).hello(westHello(nil))); code != CodePenalty {
		t.Fatalf("a second connection right after the trial's hello: %v, want %v", code, CodePenalty)
	}
	eventually(t, "probation over", func() bool { return !west.penalty().probation })
	for i := range 2 {
		if err := r.dial(t).hello(westHello(services("a", 0, 10))); err != nil {
			t.Fatalf("connection %d after probation: %v", i, err)
		}
	}
	if pn := west.penalty(); pn.probation || pn.trials != 0 {
		t.Errorf("after a hello passed: probation %v, %d on trial", pn.probation, pn.trials)
	}
}
