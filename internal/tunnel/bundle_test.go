package tunnel

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBundleRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		b    Bundle
	}{
		{name: "one root", b: Bundle{TrustDomain: "b.example", Roots: [][]byte{{0x30, 1, 2}}}},
		{name: "overlap", b: Bundle{TrustDomain: "cluster-b.ewgw.local", Roots: [][]byte{bytes.Repeat([]byte{1}, 900), {2}}}},
		{name: "at the budget", b: Bundle{TrustDomain: "b", Roots: roots(MaxBundleRoots, MaxBundleBytes/MaxBundleRoots)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := appendMessage(nil, message{kind: kindBundle, bundle: tt.b})
			if err != nil {
				t.Fatal(err)
			}
			m, err := readMessage(bytes.NewReader(enc))
			if err != nil {
				t.Fatal(err)
			}
			if m.kind != kindBundle || !m.bundle.Equal(tt.b) {
				t.Fatalf("decoded %+v, want %+v", m.bundle, tt.b)
			}
			if pe := checkBundle(m.bundle); pe != nil {
				t.Fatalf("checkBundle: %v", pe)
			}
		})
	}
}

// TestBundleEncoding pins the wire format: u8 trust domain, u64
// generation, u24 list of u16-prefixed roots.
func TestBundleEncoding(t *testing.T) {
	enc, err := appendMessage(nil, message{kind: kindBundle, bundle: Bundle{TrustDomain: "td", Gen: 9, Roots: [][]byte{{0xaa, 0xbb}, {0xcc}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := frame(kindBundle, 2, 't', 'd', 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 7, 0, 2, 0xaa, 0xbb, 0, 1, 0xcc)
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoded % x, want % x", enc, want)
	}
}

func TestBundleDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{name: "empty", body: nil},
		{name: "short trust domain", body: []byte{5, 't', 'd'}},
		{name: "no generation", body: []byte{2, 't', 'd'}},
		{name: "no root list", body: []byte{2, 't', 'd', 0, 0, 0, 0, 0, 0, 0, 1}},
		{name: "root past the list", body: []byte{2, 't', 'd', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 3, 0, 5, 1}},
		{name: "trailing bytes", body: []byte{2, 't', 'd', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readMessage(bytes.NewReader(frame(kindBundle, tt.body...))); !errors.Is(err, ErrBadHeader) {
				t.Fatalf("err %v, want ErrBadHeader", err)
			}
		})
	}
}

func TestCheckBundle(t *testing.T) {
	tests := []struct {
		name   string
		b      Bundle
		reason string // "" when valid
		code   ErrorCode
	}{
		{name: "valid", b: Bundle{TrustDomain: "b.example_1-x", Roots: [][]byte{{1}}}},
		{name: "no roots", b: Bundle{TrustDomain: "b"}, reason: refuseBadBundle, code: CodeProtocol},
		{name: "empty root", b: Bundle{TrustDomain: "b", Roots: [][]byte{{1}, {}}}, reason: refuseBadBundle, code: CodeProtocol},
		{name: "no trust domain", b: Bundle{Roots: [][]byte{{1}}}, reason: refuseBadBundle, code: CodeProtocol},
		{name: "upper case", b: Bundle{TrustDomain: "B.example", Roots: [][]byte{{1}}}, reason: refuseBadBundle, code: CodeProtocol},
		{name: "a SPIFFE ID", b: Bundle{TrustDomain: "spiffe://b", Roots: [][]byte{{1}}}, reason: refuseBadBundle, code: CodeProtocol},
		{name: "too many roots", b: Bundle{TrustDomain: "b", Roots: roots(MaxBundleRoots+1, 1)}, reason: refuseOverBundle, code: CodeLimit},
		{name: "too many bytes", b: Bundle{TrustDomain: "b", Roots: roots(5, MaxBundleBytes/4)}, reason: refuseOverBundle, code: CodeLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := checkBundle(tt.b)
			switch {
			case tt.reason == "" && pe != nil:
				t.Fatalf("refused: %v", pe)
			case tt.reason != "" && (pe == nil || pe.Reason != tt.reason || pe.Code != tt.code):
				t.Fatalf("got %v, want %s with %v", pe, tt.reason, tt.code)
			}
		})
	}
}

// roots returns n roots of size bytes each.
func roots(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i + 1)}, size)
	}
	return out
}

// bundles records what Config.OnBundle received.
type bundles struct {
	mu   sync.Mutex
	got  []Bundle
	from []BundleFrom
	err  error // what OnBundle returns
}

func (r *bundles) on(from BundleFrom, b Bundle) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, b)
	r.from = append(r.from, from)
	return r.err
}

func (r *bundles) received() []Bundle {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestHostileBundle: a bundle for the peer's own trust domain reaches
// Config.OnBundle with the peer's identity and chain; a bundle for another
// trust domain, a malformed or oversize one, or one OnBundle refuses closes
// the connection with a named code, counted by reason.
func TestHostileBundle(t *testing.T) {
	ok := Bundle{TrustDomain: "td", Roots: [][]byte{{1, 2, 3}}}
	tests := []struct {
		name   string
		b      Bundle
		refuse error // OnBundle's answer
		code   ErrorCode
		reason string // "" when accepted
	}{
		{name: "own trust domain", b: ok},
		{name: "another trust domain", b: Bundle{TrustDomain: "other", Roots: [][]byte{{1}}}, code: CodeDenied, reason: refuseBundleDomain},
		{name: "over roots", b: Bundle{TrustDomain: "td", Roots: roots(MaxBundleRoots+1, 10)}, code: CodeLimit, reason: refuseOverBundle},
		{name: "over bytes", b: Bundle{TrustDomain: "td", Roots: roots(2, MaxBundleBytes/2+1)}, code: CodeLimit, reason: refuseOverBundle},
		{name: "no roots", b: Bundle{TrustDomain: "td"}, code: CodeProtocol, reason: refuseBadBundle},
		{name: "refused by the receiver", b: ok, refuse: errors.New("does not verify"), code: CodeDenied, reason: refuseBundleRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &bundles{err: tt.refuse}
			r := newVictim(t, func(c *Config) { c.OnBundle = rec.on })
			h := r.dial(t)
			if err := h.hello(westHello(nil)); err != nil {
				t.Fatal(err)
			}
			waitPeer(t, r.victim, "west", isUp)
			tt.b.Gen = 1 // the announcer's first
			if err := h.send(message{kind: kindBundle, bundle: tt.b}); err != nil {
				t.Fatal(err)
			}
			if tt.reason != "" {
				if code := h.closedWith(); code != tt.code {
					t.Fatalf("closed with %v, want %v", code, tt.code)
				}
				r.wantRefused(t, tt.reason)
				return
			}
			eventually(t, "the bundle delivered", func() bool { return len(rec.received()) == 1 })
			rec.mu.Lock()
			from := rec.from[0]
			rec.mu.Unlock()
			if !rec.received()[0].Equal(tt.b) || from.Peer != "west" || from.ID != hostileID || len(from.Chain) == 0 {
				t.Fatalf("delivered %+v from %+v", rec.received()[0], from)
			}
			if ps := waitPeer(t, r.victim, "west", isUp); ps.LastError != nil {
				t.Fatalf("west's last error %v", ps.LastError)
			}
		})
	}
}

// TestBundleIgnoredWithoutReceiver: a gateway that does not federate reads
// a peer's bundle and keeps the connection.
func TestBundleIgnoredWithoutReceiver(t *testing.T) {
	r := newVictim(t, nil)
	h := r.dial(t)
	if err := h.hello(westHello(nil)); err != nil {
		t.Fatal(err)
	}
	if err := h.send(message{kind: kindBundle, bundle: Bundle{TrustDomain: "td", Roots: [][]byte{{1}}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bundle read", func() bool {
		return counter(t, r.victim.reg, "ewgw_tunnel_control_messages_received_total", "bundle") == 1
	})
	if ps := waitPeer(t, r.victim, "west", isUp); ps.LastError != nil {
		t.Fatalf("west's last error %v", ps.LastError)
	}
}

// TestBundleAnnounced: SetBundle reaches a peer of another trust domain
// after the hellos, and again when the bundle changes; an unchanged
// bundle is not sent again.
func TestBundleAnnounced(t *testing.T) {
	first := Bundle{TrustDomain: "east.example", Roots: [][]byte{{1}}}
	second := Bundle{TrustDomain: "east.example", Roots: [][]byte{{1}, {2}}}
	r := newVictim(t, nil)
	if err := r.victim.tun.SetBundle(first); err != nil {
		t.Fatal(err)
	}
	if err := r.victim.tun.SetBundle(Bundle{TrustDomain: "east.example", Roots: [][]byte{{1, 2}, {}}}); err == nil {
		t.Fatal("SetBundle took an empty root")
	}
	h := r.dial(t)
	if err := h.hello(westHello(nil)); err != nil {
		t.Fatal(err)
	}
	if got := h.nextBundle(); !got.Equal(first) {
		t.Fatalf("first bundle %+v, want %+v", got, first)
	}
	for _, b := range []Bundle{first, second} { // the repeat is not sent
		if err := r.victim.tun.SetBundle(b); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.nextBundle(); !got.Equal(second) {
		t.Fatalf("second bundle %+v, want %+v", got, second)
	}
}

// nextBundle reads control messages until a bundle arrives.
func (h *hostile) nextBundle() Bundle {
	h.t.Helper()
	h.ctl.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		m, err := readMessage(h.ctl)
		if err != nil {
			h.t.Fatal(err)
		}
		if m.kind == kindBundle {
			return m.bundle
		}
	}
}

// TestBundleNotSentToOwnDomain: peers of the announced trust domain get no
// bundle; the two nodes of pair share trust domain "td".
func TestBundleNotSentToOwnDomain(t *testing.T) {
	rec := &bundles{}
	a, _ := pair(t, func(a, b *Config) { b.OnBundle = rec.on })
	if err := a.tun.SetBundle(Bundle{TrustDomain: "td", Roots: [][]byte{{1}}}); err != nil {
		t.Fatal(err)
	}
	// A GOAWAY sent after the bundle arrives after it: once the peer
	// drained, a bundle would have been delivered.
	a.stop()
	if got := rec.received(); len(got) != 0 {
		t.Fatalf("delivered %+v", got)
	}
}

// TestBundleStaleGeneration: a bundle older than one the peer's run already
// announced (read late, after a newer one on another connection) is
// ignored.
func TestBundleStaleGeneration(t *testing.T) {
	rec := &bundles{}
	r := newVictim(t, func(c *Config) { c.OnBundle = rec.on })
	h := r.dial(t)
	if err := h.hello(westHello(nil)); err != nil {
		t.Fatal(err)
	}
	for _, gen := range []uint64{2, 1, 3} {
		if err := h.send(message{kind: kindBundle, bundle: Bundle{TrustDomain: "td", Gen: gen, Roots: [][]byte{{byte(gen)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// One connection reads in order: once the third is delivered, the
	// second was read and passed over.
	eventually(t, "two bundles delivered", func() bool { return len(rec.received()) == 2 })
	var gens []uint64
	for _, b := range rec.received() {
		gens = append(gens, b.Gen)
	}
	if !slices.Equal(gens, []uint64{2, 3}) {
		t.Errorf("delivered generations %v, want [2 3]", gens)
	}
}
