package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecheck: after the peer stops passing the trust check (its ID left
// the allow list, its bundle was dropped), Recheck closes its live
// connections with CodeRevoked. A stream in use ends, and an open waiting
// for the peer's status is refused, both with that code, instead of
// hanging.
func TestRecheck(t *testing.T) {
	var revoked atomic.Bool
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var verify func(tls.ConnectionState) error
	a, b := pair(t, func(a, b *Config) {
		a.ConnsPerPeer, b.ConnsPerPeer = 1, 1
		// a's handshake check refuses west once revoked is set, as
		// identity's would once west left the allow list.
		check := a.ServerTLS.VerifyConnection
		verify = func(cs tls.ConnectionState) error {
			if revoked.Load() {
				return errors.New("not allowed by policy")
			}
			return check(cs)
		}
		a.ServerTLS.VerifyConnection, a.ClientTLS.VerifyConnection = verify, verify
		a.Handler = HandlerFunc(func(ctx context.Context, in *Inbound) {
			if in.Header.Name != "hold" {
				testHandler(ctx, in)
				return
			}
			held <- struct{}{}
			<-release // no answer yet
		})
		b.Handler = HandlerFunc(testHandler)
	})
	t.Cleanup(func() { close(release) })

	live, err := b.tun.Open(t.Context(), "east", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	opened := make(chan error, 1)
	go func() {
		_, err := b.tun.Open(t.Context(), "east", Header{Namespace: "default", Name: "hold", Port: 1}, nil)
		opened <- err
	}()
	<-held

	if n := a.tun.Recheck(func(string, []*x509.Certificate) error { return nil }); n != 0 {
		t.Fatalf("Recheck closed %d connections of a peer that passes", n)
	}
	revoked.Store(true)
	recheck := func(_ string, chain []*x509.Certificate) error {
		return verify(tls.ConnectionState{PeerCertificates: chain})
	}
	if n := a.tun.Recheck(recheck); n != 2 {
		t.Fatalf("Recheck closed %d connections, want both", n)
	}

	var re *RefusedError
	if err := <-opened; !errors.As(err, &re) || re.Code != CodeRevoked {
		t.Errorf("pending open: %v, want refused with %v", err, CodeRevoked)
	}
	live.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := live.Read(make([]byte, 1)); mustRemoteCode(t, err) != CodeRevoked {
		t.Errorf("live stream: %v, want %v", err, CodeRevoked)
	}
	waitPeer(t, a, "west", isDown)
	waitPeer(t, b, "east", isDown)
	if n := counter(t, a.reg, "ewgw_tunnel_peer_refusals_total", refuseRevoked); n != 2 {
		t.Errorf("refusals{revoked} = %v, want 2", n)
	}
}

// TestCertExpiry: a connection does not outlive the peer certificate it
// was verified with. Ahead of the expiry it takes no new streams; at the
// expiry it closes with CodeCertExpired, ending the streams still on it.
func TestCertExpiry(t *testing.T) {
	notAfter := time.Now().Add(6 * time.Second)
	ca := newCA(t, "td")
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	ce := testConfig("east", ca.leafUntil(t, "/ns/ewgw/sa/ewgw", notAfter), ca)
	cw := testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	ce.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: "td"}}
	cw.Peers = []Peer{{Name: "east", Addrs: []string{pa.LocalAddr().String()}, Expect: testID}}
	ce.ConnsPerPeer, cw.ConnsPerPeer = 1, 1
	cw.Handler = HandlerFunc(testHandler)
	east, west := start(t, ce, pa), start(t, cw, pb)
	waitPeer(t, east, "west", func(ps PeerStatus) bool { return ps.Conns == 2 })
	waitPeer(t, west, "east", func(ps PeerStatus) bool { return ps.Conns == 2 })

	// A stream that lasts past the expiry: west's handler reads until EOF.
	s, err := east.tun.Open(t.Context(), "west", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err = s.Read(make([]byte, 1))
	if code := mustRemoteCode(t, err); code != CodeCertExpired {
		t.Fatalf("stream ended with %v, want %v", code, CodeCertExpired)
	}
	// The certificate says when it expires to the second.
	if early := time.Until(notAfter); early > time.Second {
		t.Errorf("closed %v before the certificate expired", early)
	}
	if n := counter(t, west.reg, "ewgw_tunnel_peer_refusals_total", refuseCertExpiry); n < 1 {
		t.Errorf("refusals{cert_expiry} = %v, want at least 1", n)
	}
	// No new handshake passes with the expired certificate.
	waitPeer(t, west, "east", func(ps PeerStatus) bool { return ps.Conns == 0 })
}

func TestRetireAt(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	hour := now.Add(time.Hour)
	tests := []struct {
		name     string
		notAfter time.Time
		r        float64
		want     time.Time
	}{
		{name: "earliest", notAfter: hour, r: 0.999999, want: hour.Add(-30 * time.Minute)},
		{name: "latest", notAfter: hour, r: 0, want: hour.Add(-15 * time.Minute)},
		{name: "already expired", notAfter: now.Add(-time.Second), r: 0, want: now.Add(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := retireAt(now, tt.notAfter, tt.r)
			if d := got.Sub(tt.want); d < -time.Second || d > time.Second {
				t.Errorf("retireAt = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRetireLosesNoStream: the side that retires a connection finishes its
// stream first (it wrote the whole reply) while the peer has not read the
// reply yet. The connection stays until the peer has read it all, then
// closes gracefully, and the dialler's replacement, dialled at the
// retirement, carries the next stream.
func TestRetireLosesNoStream(t *testing.T) {
	ca := newCA(t, "td")
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	ce := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cw := testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	ce.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: "td"}}
	cw.Peers = []Peer{{Name: "east", Expect: testID}} // west only accepts
	ce.ConnsPerPeer = 1
	cw.Handler = HandlerFunc(testHandler)
	east, west := start(t, ce, pa), start(t, cw, pb)
	one := func(ps PeerStatus) bool { return ps.Up && ps.Conns == 1 }
	waitPeer(t, east, "west", one)
	waitPeer(t, west, "east", one)

	const kib = 200 // within the stream's first window on either transport (yamux: 256 KiB): west writes it all unread
	s, err := east.tun.Open(t.Context(), "west", Header{Namespace: "default", Name: svcSHA, Port: kib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	retired := s.c
	p := west.tun.peers["east"]
	p.mu.Lock()
	c := p.conns[0]
	p.mu.Unlock()
	west.tun.retire(c, time.Now().Add(time.Minute))
	req := payload(7, 10<<10)
	if _, err := s.Write(req); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	eventually(t, "west's handler done", func() bool { return c.streams.Load() == 0 })
	if err := c.sess.Context().Err(); err != nil {
		t.Fatalf("west closed the connection before east read the reply: %v", context.Cause(c.sess.Context()))
	}
	if err := readReply(s, req, kib); err != nil {
		t.Fatal(err)
	}
	s.Close()
	<-c.sess.Context().Done()
	if err := context.Cause(c.sess.Context()); !isGraceful(err) {
		t.Errorf("retired connection closed with %v, want code ok", err)
	}
	waitPeer(t, east, "west", one)
	s, err = east.tun.Open(t.Context(), "west", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.c == retired {
		t.Error("a stream opened on the retired connection")
	}
	if err := exchange(s, req, 1); err != nil {
		t.Fatal(err)
	}
}
