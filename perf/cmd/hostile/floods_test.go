package main

import (
	"bytes"
	"testing"
)

// TestPrepareInitials: each datagram is a QUIC v1 client Initial, padded
// to at least 1,200 bytes (RFC 9000 §14.1), each with its own connection ID.
func TestPrepareInitials(t *testing.T) {
	e := &setup{o: options{initials: 20}}
	if err := prepareInitials(e); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, p := range e.initials {
		if len(p) < 1200 || p[0]&0xf0 != 0xc0 || !bytes.Equal(p[1:5], []byte{0, 0, 0, 1}) {
			t.Fatalf("datagram %d (%d bytes, first byte %#x) is not a v1 Initial", i, len(p), p[0])
		}
		dcid := string(p[6 : 6+int(p[5])])
		if seen[dcid] {
			t.Fatalf("datagram %d repeats a connection ID", i)
		}
		seen[dcid] = true
	}
}
