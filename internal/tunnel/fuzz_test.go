// Fuzz targets, run by the fuzz-smoke Makefile target one at a time:
//
//	FuzzHeader
//	FuzzControl

package tunnel

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// FuzzHeader checks that decoding never panics, never accepts more than
// MaxHeaderLen, and that whatever decodes re-encodes to the same header.
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

// FuzzControl checks that decoding a control frame never panics and that
// whatever decodes re-encodes to an equal message.
func FuzzControl(f *testing.F) {
	exports := []Export{{Namespace: "default", Name: "reviews", Ports: []ExportPort{{9080, 3}, {443, 0}}}, {Namespace: "a", Name: "b"}}
	for _, m := range []message{
		{kind: kindHello, hello: hello{Cluster: "east", Region: "eu", Zone: "eu-1a", Version: "v1", Instance: 7, Gen: 1, LeaseMS: 2000, Exports: exports}},
		{kind: kindExports, hello: hello{Gen: 2, Exports: exports}},
		{kind: kindDelta, delta: delta{Base: 2, Gen: 3, Upserts: exports[:1], Removed: []serviceKey{{"a", "b"}}}},
		{kind: kindDelta, delta: delta{Base: 3, Gen: 4}},
		{kind: kindLease},
		{kind: kindGoAway},
	} {
		b, err := appendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readMessage(bytes.NewReader(b))
		if err != nil {
			return
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
