package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/quic-go/quic-go"
)

// The hostile-peer harness: a victim gateway "east" peers with "west",
// whose identity a test holds and drives by hand over real QUIC (or TCP,
// when the suite runs on it: EWGW_TUNNEL_TRANSPORT), speaking the control
// protocol message by message.

const hostileID = "spiffe://td/ns/west/sa/ewgw"

type rig struct {
	ca     *testCA
	victim *node
	logs   *syncBuffer
}

// newVictim starts the victim; edit may change its config.
func newVictim(t *testing.T, edit func(*Config)) *rig {
	t.Helper()
	ca := newCA(t, "td")
	cfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfg.Peers = []Peer{{Name: "west", Expect: hostileID}}
	cfg.Handler = HandlerFunc(testHandler)
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if edit != nil {
		edit(&cfg)
	}
	return &rig{ca: ca, victim: start(t, cfg, bindUDP(t, "127.0.0.1:0")), logs: logs}
}

// hostile is one connection of the scripted peer.
type hostile struct {
	t    *testing.T
	sess session
	ctl  pstream
}

// dial connects to the victim as west; the handshake passes.
func (r *rig) dial(t *testing.T) *hostile {
	t.Helper()
	_, client := tlsConfigs(r.ca.leaf(t, "/ns/west/sa/ewgw"), r.ca)
	client.NextProtos = []string{ALPN}
	if testTransport == TransportTCP {
		raw, err := net.Dial("tcp4", r.victim.addr)
		if err != nil {
			t.Fatal(err)
		}
		cc := &countConn{Conn: raw}
		tc := tls.Client(cc, client)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		ycfg := Config{}.withDefaults()
		sess, err := newTCPSession(tc, cc, ycfg.yamuxConfig(), true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.CloseWithError(CodeOK, "") })
		return &hostile{t: t, sess: sess}
	}
	udp := bindUDP(t, "127.0.0.1:0")
	tr := &quic.Transport{Conn: udp}
	ua, err := net.ResolveUDPAddr("udp4", r.victim.addr)
	if err != nil {
		t.Fatal(err)
	}
	qc, err := tr.Dial(t.Context(), ua, client, &quic.Config{HandshakeIdleTimeout: 5 * time.Second,
		MaxIdleTimeout: time.Minute, KeepAlivePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		qc.CloseWithError(0, "")
		tr.Close()
		udp.Close()
	})
	return &hostile{t: t, sess: quicSession{qc}}
}

// withNorth lets the victim peer with north, an honest third peer.
func withNorth(c *Config) {
	c.Peers = append(c.Peers, Peer{Name: "north", Expect: "spiffe://td/ns/north/sa/ewgw"})
}

// startNorth starts north, dialling the victim (withNorth), and waits
// until it is up: its streams show what an honest peer gets meanwhile.
func (r *rig) startNorth(t *testing.T) *node {
	t.Helper()
	cfg := testConfig("north", r.ca.leaf(t, "/ns/north/sa/ewgw"), r.ca)
	cfg.Peers = []Peer{{Name: "east", Addrs: []string{r.victim.addr}, Expect: testID}}
	cfg.ConnsPerPeer = 1
	north := start(t, cfg, bindUDP(t, "127.0.0.1:0"))
	waitPeer(t, north, "east", isUp)
	return north
}

// westHello is an honest-looking hello from west.
func westHello(exports []Export) hello {
	return hello{Cluster: "west", Region: "west-region", Version: "evil", Instance: 1, Gen: 1,
		LeaseMS: 60_000, Exports: exports}
}

// hello opens the control stream, sends h and reads the victim's hello.
func (h *hostile) hello(hl hello) error {
	ctx, cancel := context.WithTimeout(h.t.Context(), waitTimeout)
	defer cancel()
	ctl, err := h.sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	h.ctl = ctl
	if err := h.send(message{kind: kindHello, hello: hl}); err != nil {
		return err
	}
	ctl.SetReadDeadline(time.Now().Add(waitTimeout))
	m, err := readMessage(ctl)
	if err == nil && m.kind != kindHello {
		err = fmt.Errorf("victim sent kind %d first", m.kind)
	}
	return err
}

func (h *hostile) send(m message) error {
	b, err := appendMessage(nil, m)
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = h.ctl.Write(b)
	return err
}

// closedWith waits until the victim closed the connection, and returns
// the code it closed with.
func (h *hostile) closedWith() ErrorCode {
	h.t.Helper()
	select {
	case <-h.sess.Context().Done():
	case <-time.After(waitTimeout):
		h.t.Fatal("the victim never closed the connection")
	}
	return mustRemoteCode(h.t, context.Cause(h.sess.Context()))
}

func mustRemoteCode(t *testing.T, err error) ErrorCode {
	t.Helper()
	code, ok := remoteCode(err)
	if !ok {
		t.Fatalf("error %v carries no code from the victim", err)
	}
	return code
}

// services returns n valid exports named svc-<from>… in namespace ns.
func services(ns string, from, n int) []Export {
	out := make([]Export, n)
	for i := range out {
		out[i] = Export{Service: model.ServiceKey{Namespace: ns, Name: fmt.Sprintf("svc-%d", from+i)}, Ports: []ExportPort{{Port: 443, Ready: 1}}}
	}
	return out
}

// wantRefused checks how the victim recorded a refusal of west.
func (r *rig) wantRefused(t *testing.T, reason string) {
	t.Helper()
	ps := waitPeer(t, r.victim, "west", func(ps PeerStatus) bool { return ps.LastError != nil && ps.Conns == 0 })
	var pe *PolicyError
	if !errors.As(ps.LastError, &pe) || pe.Reason != reason {
		t.Errorf("west's last error %v, want a %s refusal", ps.LastError, reason)
	}
	if len(ps.Exports) != 0 {
		t.Errorf("west still exports %d services", len(ps.Exports))
	}
	if n := counter(t, r.victim.reg, "ewgw_tunnel_peer_refusals_total", reason); n != 1 {
		t.Errorf("refusals{%s} = %v, want 1", reason, n)
	}
	eventually(t, "an info line naming "+reason, func() bool {
		for line := range strings.Lines(r.logs.String()) {
			if strings.Contains(line, "level=INFO") && strings.Contains(line, reason) {
				return true
			}
		}
		return false
	})
}

// TestHostileCatalogue: a peer that floods catalogue updates past a budget,
// or sends an entry no cluster could export, loses its connection with a
// named code; the victim logs why at info, counts it and shows it as the
// peer's last error.
func TestHostileCatalogue(t *testing.T) {
	bad := Export{Service: model.ServiceKey{Namespace: "kube-system", Name: "Evil.Name"}}
	tests := []struct {
		name   string
		edit   func(*Config)
		hello  []Export
		deltas [][]Export // upserts, one delta each, sent in turn
		code   ErrorCode
		reason string
		atHelo bool // refused at the hello
	}{
		{name: "delta flood over services", edit: func(c *Config) { c.MaxImportedServices = 100 },
			hello:  services("a", 0, 10),
			deltas: [][]Export{services("a", 10, 40), services("a", 50, 40), services("a", 90, 40), services("a", 130, 40)},
			code:   CodeLimit, reason: refuseServices},
		{name: "delta flood over bytes", edit: func(c *Config) { c.MaxImportedBytes = 2000 },
			hello:  services("namespace-with-a-long-name", 0, 10),
			deltas: [][]Export{services("namespace-with-a-long-name", 10, 40), services("namespace-with-a-long-name", 50, 40)},
			code:   CodeLimit, reason: refuseBytes},
		{name: "hello over services", edit: func(c *Config) { c.MaxImportedServices = 5 },
			hello: services("a", 0, 6), code: CodeLimit, reason: refuseServices, atHelo: true},
		{name: "bad entry in a delta", hello: services("a", 0, 1), deltas: [][]Export{{bad}},
			code: CodeProtocol, reason: refuseBadExport},
		{name: "bad entry in the hello", hello: []Export{bad}, code: CodeProtocol, reason: refuseBadExport, atHelo: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newVictim(t, tt.edit)
			h := r.dial(t)
			err := h.hello(westHello(tt.hello))
			if tt.atHelo {
				if code := mustRemoteCode(t, err); code != tt.code {
					t.Fatalf("hello refused with %v, want %v", code, tt.code)
				}
				r.wantRefused(t, tt.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			waitPeer(t, r.victim, "west", isUp)
			for i, up := range tt.deltas {
				gen := uint64(i + 1)
				// Writes after the victim closed may fail; the close says why.
				_ = h.send(message{kind: kindDelta, delta: delta{Base: gen, Gen: gen + 1, Upserts: up}})
			}
			if code := h.closedWith(); code != tt.code {
				t.Fatalf("closed with %v, want %v", code, tt.code)
			}
			r.wantRefused(t, tt.reason)
		})
	}
}

// TestHostileStreams: a peer that opens streams and never finishes a
// header holds at most MaxIncomingStreams of them per connection, each for
// HeaderTimeout, then refused with CodeBadHeader; an honest peer's
// streams work throughout.
func TestHostileStreams(t *testing.T) {
	const limit = 16
	r := newVictim(t, func(c *Config) {
		c.MaxIncomingStreams = limit
		c.HeaderTimeout = 2 * time.Second
		withNorth(c)
	})
	north := r.startNorth(t)

	h := r.dial(t)
	if err := h.hello(westHello(nil)); err != nil {
		t.Fatal(err)
	}
	var pending []pstream
	if testTransport == TransportTCP {
		pending = overLimitTCP(t, h, limit)
	} else {
		qc := h.sess.(quicSession).qc
		for {
			s, err := qc.OpenStream()
			var sl *quic.StreamLimitReachedError
			if errors.As(err, &sl) {
				break
			}
			if err != nil || len(pending) > 10*limit {
				t.Fatalf("stream %d: %v", len(pending), err)
			}
			s.Write([]byte{HeaderVersion}) // a header that never completes
			pending = append(pending, quicStream{s})
		}
	}
	if len(pending) != limit-1 { // the control stream is one
		t.Fatalf("opened %d streams, want %d", len(pending), limit-1)
	}

	// The honest peer is served while west's streams wait.
	s, err := north.tun.Open(t.Context(), "east", Header{Namespace: "default", Name: svcSHA, Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(s, []byte("honest"), 1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// West's streams are refused at the header timeout, which returns
	// their credit.
	for _, s := range pending {
		s.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err := io.ReadAll(s) // the status frame may come before the reset (TCP)
		if code := mustRemoteCode(t, err); code != CodeBadHeader {
			t.Fatalf("pending stream ended with %v, want %v", code, CodeBadHeader)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := h.sess.OpenStream(ctx); err != nil {
		t.Fatalf("no stream credit after the refusals: %v", err)
	}
	if n := counter(t, r.victim.reg, "ewgw_tunnel_streams_accepted_total", CodeBadHeader.label()); n != limit-1 {
		t.Errorf("streams refused for their header: %v, want %d", n, limit-1)
	}
}

// overLimitTCP opens streams with headers that never complete past the
// limit of concurrent streams on a TCP session, where yamux resets the
// extra streams rather than withholding credit as QUIC does; it checks the
// extras were reset and returns the others.
func overLimitTCP(t *testing.T, h *hostile, limit int) []pstream {
	t.Helper()
	const extra = 3
	var open []pstream
	for range limit - 1 + extra {
		s, err := h.sess.OpenStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{HeaderVersion})
		open = append(open, s)
	}
	for _, s := range open[limit-1:] {
		s.SetReadDeadline(time.Now().Add(time.Second)) // well before the header timeout
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
			t.Fatalf("stream past the limit: %v, want a reset", err)
		}
	}
	return open[:limit-1]
}

// TestHostileConnections: connections from one peer identity beyond
// MaxConnsPerPeerIn are closed with CodeLimit; when one goes, another may
// come.
func TestHostileConnections(t *testing.T) {
	const max, tries = 2, 5
	r := newVictim(t, func(c *Config) { c.MaxConnsPerPeerIn = max })
	var up []*hostile
	for range tries {
		h := r.dial(t)
		err := h.hello(westHello(nil))
		if err == nil {
			up = append(up, h)
			continue
		}
		if code := mustRemoteCode(t, err); code != CodeLimit {
			t.Fatalf("extra connection closed with %v, want %v", code, CodeLimit)
		}
	}
	if len(up) != max {
		t.Fatalf("%d connections up, want %d", len(up), max)
	}
	if n := counter(t, r.victim.reg, "ewgw_tunnel_peer_refusals_total", refuseConns); n != tries-max {
		t.Errorf("refusals{%s} = %v, want %d", refuseConns, n, tries-max)
	}
	up[0].sess.CloseWithError(CodeOK, "")
	waitPeer(t, r.victim, "west", func(ps PeerStatus) bool { return ps.Conns == max-1 })
	eventually(t, "a connection in the freed place", func() bool {
		return r.dial(t).hello(westHello(nil)) == nil
	})
}

// TestHostileClaims: a peer's hello cannot name another cluster, its ready
// counts are clamped, and a configured region wins over its claim. Streams
// it opens carry its configured name whatever their header says.
func TestHostileClaims(t *testing.T) {
	t.Run("another cluster's name", func(t *testing.T) {
		r := newVictim(t, nil)
		hl := westHello(nil)
		hl.Cluster = "north"
		if code := mustRemoteCode(t, r.dial(t).hello(hl)); code != CodeDenied {
			t.Fatalf("hello refused with %v, want %v", code, CodeDenied)
		}
		r.wantRefused(t, refuseClusterMismatch)
	})

	huge := []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: []ExportPort{{Port: 443, Ready: 1<<32 - 1}}}}
	for _, tt := range []struct {
		name, configured, want string
	}{
		{name: "claimed region", want: "west-region"},
		{name: "configured region", configured: "west-configured", want: "west-configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			peers := make(chan audience.Peer, 1)
			r := newVictim(t, func(c *Config) {
				c.Peers[0].Region = tt.configured
				c.Handler = HandlerFunc(func(_ context.Context, in *Inbound) {
					peers <- in.Peer
					in.Refuse(CodeNotExported)
				})
			})
			h := r.dial(t)
			if err := h.hello(westHello(huge)); err != nil {
				t.Fatal(err)
			}
			ps := waitPeer(t, r.victim, "west", isUp)
			if got := ps.Exports[0].Ports[0].Ready; got != MaxReady {
				t.Errorf("ready %d, want it clamped to %d", got, MaxReady)
			}
			if ps.Cluster != "west" || ps.Region != tt.want {
				t.Errorf("cluster %q region %q, want west and %q", ps.Cluster, ps.Region, tt.want)
			}
			hdr := sampleHeader()
			hdr.SourceCluster = "north"
			b, _ := hdr.AppendBinary(nil)
			s, err := h.sess.OpenStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			s.Write(b)
			if got := <-peers; got.Cluster != "west" || got.ID != hostileID {
				t.Errorf("stream from %+v, want west", got)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestControlVersionSkew: a peer speaking control protocol 2 (one message
// per catalogue) is told why it cannot peer, and the victim logs it at
// info.
func TestControlVersionSkew(t *testing.T) {
	r := newVictim(t, nil)
	h := r.dial(t)
	ctl, err := h.sess.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctl.Write(frame(kindHello, append([]byte{2, 4, 'w', 'e', 's', 't', 0, 0, 0}, make([]byte, 20+3)...)...))
	ctl.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err = readMessage(ctl)
	if code, ok := remoteCode(err); !ok || code != CodeProtocol ||
		testTransport != TransportTCP && !strings.Contains(err.Error(), "want 3") { // a TCP close carries no text
		t.Fatalf("victim answered %v, want a protocol close naming version 3", err)
	}
	eventually(t, "an info line about the version", func() bool {
		for line := range strings.Lines(r.logs.String()) {
			if strings.Contains(line, "level=INFO") && strings.Contains(line, "control protocol 2, want 3") {
				return true
			}
		}
		return false
	})
}
