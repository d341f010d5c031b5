// Fuzz targets, run by the fuzz-smoke Makefile target one at a time:
//
//	FuzzHeader
//	FuzzControl
//	FuzzBundle
//	FuzzYamuxSession

package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/libp2p/go-yamux/v5"
)

// FuzzHeader checks that decoding never panics, never accepts more than
// MaxHeaderLen or a target that is not DNS-1123 labels and a port, and
// that whatever decodes re-encodes to the same header.
func FuzzHeader(f *testing.F) {
	for _, h := range []Header{
		sampleHeader(),
		{Namespace: "a", Name: "b", Port: 1},
		{Namespace: "ns", Name: "svc", Port: 443, Client: netip.MustParseAddrPort("[2001:db8::1]:1")},
	} {
		b, err := h.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{HeaderVersion, 0xff, 0xff})
	f.Add([]byte{HeaderVersion, 0, 8, 1, 'A', 1, 'b', 0, 1, 0, 0, 0}) // not a label
	f.Add([]byte{HeaderVersion, 0, 8, 1, 'a', 1, 'b', 0, 0, 0, 0, 0}) // port 0
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		err := h.UnmarshalBinary(b)
		rh, rerr := readHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(b) > MaxHeaderLen {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if !isLabel(h.Namespace) || !isLabel(h.Name) || h.Port == 0 {
			t.Fatalf("accepted target %q/%q:%d", h.Namespace, h.Name, h.Port)
		}
		if rerr != nil || rh != h {
			t.Fatalf("readHeader disagrees: %+v %v", rh, rerr)
		}
		enc, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var h2 Header
		if err := h2.UnmarshalBinary(enc); err != nil || h2 != h {
			t.Fatalf("round trip: %+v %v, want %+v", h2, err, h)
		}
	})
}

// FuzzControl checks that decoding a control frame never panics, that
// whatever decodes is valid (checkExport, ready counts clamped) and
// re-encodes to an equal message, and that applying a decoded update to a
// catalogue yields a catalogue sorted by key with no duplicate, whose budget
// check does not panic.
func FuzzControl(f *testing.F) {
	exports := []Export{{Service: model.ServiceKey{Namespace: "default", Name: "reviews"}, Ports: []ExportPort{{Port: 9080, Ready: 3}, {Port: 443, Ready: 0}}}, {Service: model.ServiceKey{Namespace: "a", Name: "b"}}}
	for _, m := range []message{
		{kind: kindHello, hello: hello{Cluster: "east", Region: "eu", Zone: "eu-1a", Version: "v1", Instance: 7, Gen: 1, LeaseMS: 2000, Exports: exports}},
		{kind: kindExports, hello: hello{Gen: 2, Exports: exports}},
		{kind: kindDelta, delta: delta{Base: 2, Gen: 3, Upserts: exports[:1], Removed: []serviceKey{{Namespace: "a", Name: "b"}}}},
		{kind: kindDelta, delta: delta{Base: 3, Gen: 4}},
		{kind: kindHello, more: true, hello: hello{Cluster: "east", Gen: 1, LeaseMS: 2000, Exports: exports[:1]}},
		{kind: kindExports, more: true, hello: hello{Gen: 2, Exports: exports}},
		{kind: kindDelta, more: true, delta: delta{Base: 2, Gen: 3, Removed: []serviceKey{{Namespace: "a", Name: "b"}}}},
		{kind: kindLease},
		{kind: kindGoAway},
		// Refused or clamped: the fuzzer mutates these into the valid
		// and invalid forms nearby.
		{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Upserts: []Export{{Service: model.ServiceKey{Namespace: "Shop", Name: "web"}}}}},
		{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Upserts: []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: []ExportPort{{Port: 443, Ready: 1}, {Port: 443, Ready: 2}, {Port: 0, Ready: 1}}}}}},
		{kind: kindExports, hello: hello{Gen: 5, Exports: []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: []ExportPort{{Port: 443, Ready: 1<<32 - 1}}}}}},
		{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Removed: []serviceKey{{Namespace: "default", Name: "reviews"}, {Namespace: "kube-system", Name: "-x"}}}},
	} {
		b, err := appendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	base := snapshot{Gen: 1, Exports: normalize(exports)}
	cfg := Config{MaxImportedServices: 3, MaxImportedBytes: 64}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readMessage(bytes.NewReader(b))
		if err != nil {
			return
		}
		checkValid(t, m.hello.Exports)
		checkValid(t, m.delta.Upserts)
		for _, k := range m.delta.Removed {
			if err := checkKey(k); err != nil {
				t.Fatalf("decoded removal: %v", err)
			}
		}
		var next snapshot
		switch m.kind {
		case kindDelta:
			next, err = base.apply(m.delta)
		case kindExports:
			next, err = base.replace(snapshot{Gen: m.hello.Gen, Exports: m.hello.Exports})
		}
		if err == nil {
			checkCatalogue(t, next.Exports)
			_ = cfg.checkBudget(next.Exports)
		}
		enc, err := appendMessage(nil, m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := readMessage(bytes.NewReader(enc))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v %v, want %+v", m2, err, m)
		}
	})
}

// checkValid fails t unless every export passes checkExport with its ready
// counts clamped.
func checkValid(t *testing.T, exports []Export) {
	t.Helper()
	for _, e := range exports {
		if err := checkExport(e); err != nil {
			t.Fatalf("decoded export: %v", err)
		}
		for _, p := range e.Ports {
			if p.Ready > MaxReady {
				t.Fatalf("decoded ready count %d over %d", p.Ready, MaxReady)
			}
		}
	}
}

// checkCatalogue fails t unless exports are valid, sorted by key and
// unique.
func checkCatalogue(t *testing.T, exports []Export) {
	t.Helper()
	checkValid(t, exports)
	for i := 1; i < len(exports); i++ {
		if compareExports(exports[i-1], exports[i]) >= 0 {
			t.Fatalf("catalogue out of order or duplicated at %d: %v", i, exports)
		}
	}
}

// FuzzBundle checks that decoding a bundle message never panics, that
// whatever decodes re-encodes to the same bytes, and that checkBundle
// passes only bundles within the budgets whose trust domain is a name.
func FuzzBundle(f *testing.F) {
	for _, b := range []Bundle{
		{TrustDomain: "b.ewgw.local", Roots: [][]byte{bytes.Repeat([]byte{0x30}, 40)}},
		{TrustDomain: "b", Roots: [][]byte{{1}, {2, 3}}},
		// Refused: the fuzzer mutates these into the forms nearby.
		{TrustDomain: "B", Roots: [][]byte{{1}}},
		{TrustDomain: "b"},
		{TrustDomain: "b", Roots: roots(MaxBundleRoots+1, 1)},
	} {
		enc, err := appendMessage(nil, message{kind: kindBundle, bundle: b})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc[controlPrefixLen:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeMessage(kindBundle, body)
		if err != nil {
			return
		}
		enc, err := appendMessage(nil, m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(enc[controlPrefixLen:], body) {
			t.Fatalf("round trip: % x, want % x", enc[controlPrefixLen:], body)
		}
		if checkBundle(m.bundle) != nil {
			return
		}
		n := 0
		for _, r := range m.bundle.Roots {
			n += len(r)
		}
		if len(m.bundle.Roots) == 0 || len(m.bundle.Roots) > MaxBundleRoots || n > MaxBundleBytes || !isTrustDomain(m.bundle.TrustDomain) {
			t.Fatalf("accepted %d roots of %d bytes for %q", len(m.bundle.Roots), n, m.bundle.TrustDomain)
		}
	})
}

// FuzzYamuxSession feeds a TCP peering connection's yamux session what an
// authenticated peer may send after TLS, on ewgw's yamux configuration and
// its fork (third_party/go-yamux): streams opened, written, half-closed
// and reset, windows granted, pings and GoAways, in any order and length.
// Whatever comes, the session never reserves more window memory than a
// connection may hold, closes once the peer's bytes end, and gives back
// every byte of window memory its streams reserved.
func FuzzYamuxSession(f *testing.F) {
	const syn, fin, rst = 0x1, 0x4, 0x8
	frame := func(typ byte, flags uint16, id, length uint32, body ...byte) []byte {
		b := []byte{0, typ}
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint32(b, id)
		b = binary.BigEndian.AppendUint32(b, length)
		return append(b, body...)
	}
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	open := frame(yamuxTypeWindowUpdate, syn, 1, 0)
	f.Add([]byte{})
	f.Add(cat(open, frame(yamuxTypeData, 0, 1, 5, []byte("hello")...), frame(yamuxTypeWindowUpdate, fin, 1, 0)))
	f.Add(cat(open, frame(yamuxTypeWindowUpdate, 0, 1, 16<<20), frame(yamuxTypeData, 0, 1, 1<<20)))    // more than the window
	f.Add(cat(open, frame(yamuxTypeData, 0, 1, 3, 1, 2, 3), frame(yamuxTypeWindowUpdate, rst, 1, 17))) // reset with a code
	f.Add(cat(frame(2, syn, 0, 7), frame(3, 0, 0, 0)))                                                 // ping, GoAway
	var many [][]byte
	for id := uint32(1); id < 2*(tcpMaxIncomingStreams+8); id += 2 {
		many = append(many, frame(yamuxTypeWindowUpdate, syn, id, 0), frame(yamuxTypeData, 0, id, 1, 'x'))
	}
	f.Add(cat(many...)) // past the incoming stream limit
	tcfg := Config{}.withDefaults()
	cfg := tcfg.yamuxConfig()
	f.Fuzz(func(t *testing.T, in []byte) { feedYamux(t, cfg, in) })
}

// feedYamux is FuzzYamuxSession on one input.
func feedYamux(t *testing.T, cfg *yamux.Config, in []byte) {
	local, peer := net.Pipe()
	m := &tcpMemory{}
	sess, err := yamux.Server(local, cfg, m.span)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	go func() {
		for {
			s, err := sess.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				s.SetReadDeadline(time.Now().Add(time.Second))
				io.Copy(io.Discard, s)
				s.Close()
			}()
		}
	}()
	go io.Copy(io.Discard, peer) // window updates, pongs, GoAway
	peer.SetWriteDeadline(time.Now().Add(2 * time.Second))
	peer.Write(in)
	// The session has read what the peer wrote (a pipe's write returns
	// once read): initial windows of at most tcpMaxIncomingStreams
	// streams, and growth within maxConnWindow.
	m.mu.Lock()
	used := m.used
	m.mu.Unlock()
	if used > tcpMaxIncomingStreams*(256<<10)+maxConnWindow {
		t.Fatalf("%d bytes of window memory reserved, over the %d a connection may hold", used, tcpMaxIncomingStreams*(256<<10)+maxConnWindow)
	}
	peer.Close()
	select {
	case <-sess.CloseChan():
	case <-time.After(2 * time.Second):
		t.Fatal("session still open 2s after the peer's bytes ended")
	}
	sess.Close() // returns once the loops are done and the streams closed
	m.mu.Lock()
	used = m.used
	m.mu.Unlock()
	if used != 0 {
		t.Fatalf("%d bytes of window memory still reserved after the session closed", used)
	}
}
