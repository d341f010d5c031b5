package testbed

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
)

// TestStream: the same bytes however they are read, every block unlike the
// others, the seeds unlike each other, and exactly n of them.
func TestStream(t *testing.T) {
	const n = 3*streamBlock + 1234
	whole, err := io.ReadAll(Stream(7, n))
	if err != nil || len(whole) != n {
		t.Fatalf("ReadAll: %d bytes, %v; want %d", len(whole), err, n)
	}
	// Odd read sizes, straddling block starts and the index bytes.
	var pieces []byte
	s := Stream(7, n)
	for i := 0; ; i++ {
		buf := make([]byte, 1+i%13+(i%5)*4099)
		m, err := s.Read(buf)
		pieces = append(pieces, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(whole, pieces) {
		t.Fatal("reading in pieces gave other bytes than one read")
	}
	for i := range 3 {
		a, b := whole[i*streamBlock:(i+1)*streamBlock], whole[(i+1)*streamBlock:min(n, (i+2)*streamBlock)]
		if bytes.Equal(a[:len(b)], b) {
			t.Fatalf("blocks %d and %d are alike", i, i+1)
		}
		if got := binary.LittleEndian.Uint64(a[:8]); got != uint64(i) {
			t.Fatalf("block %d starts with index %d", i, got)
		}
		if !bytes.Equal(a[8:], whole[8:streamBlock]) {
			t.Fatalf("block %d differs from block 0 beyond its index", i)
		}
	}
	other, _ := io.ReadAll(Stream(8, n))
	if bytes.Equal(whole, other) {
		t.Fatal("seeds 7 and 8 give the same stream")
	}
}

// TestBulkDigests runs the bulk protocol over real TLS on loopback with each
// digest; a server that alters a byte or swaps two blocks must fail it, and
// an unknown digest is refused.
func TestBulkDigests(t *testing.T) {
	ca, err := NewCA("bulk test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("bulk.test")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(fn func(*tls.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}}, fn)
		t.Cleanup(b.Close)
		return b.Addr()
	}
	good := serve(ServeBulk)
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "bulk.test"}
	for _, d := range []Digest{SHA256, CRC32C} {
		raw, err := net.Dial("tcp", good)
		if err != nil {
			t.Fatal(err)
		}
		if err := BulkDigest(raw, client, 1<<20+3, 2<<20+5, d); err != nil {
			t.Errorf("digest %d: %v", d, err)
		}
	}
	// A server that alters one byte of the download, and one that swaps
	// two of its blocks (same length; only the block index tells them
	// apart): each digest must catch both.
	tamper := func(alter func([]byte) []byte) func(*tls.Conn) {
		return func(c *tls.Conn) {
			h, n, err := readHeader(c)
			if err != nil {
				return
			}
			io.Copy(h, c)
			c.Write(h.Sum(nil))
			b, _ := io.ReadAll(Stream(2, n))
			c.Write(alter(b))
			c.CloseWrite()
		}
	}
	flip := serve(tamper(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }))
	swap := serve(tamper(func(b []byte) []byte {
		b1 := bytes.Clone(b[streamBlock : 2*streamBlock])
		copy(b[streamBlock:], b[2*streamBlock:3*streamBlock])
		copy(b[2*streamBlock:], b1)
		return b
	}))
	for _, d := range []Digest{SHA256, CRC32C} {
		for name, addr := range map[string]string{"altered": flip, "swapped": swap} {
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			err = BulkDigest(raw, client, 1<<10, 4*streamBlock, d)
			if err == nil || !strings.Contains(err.Error(), "downstream") {
				t.Errorf("digest %d, %s download: %v, want a downstream mismatch", d, name, err)
			}
		}
	}
	raw, err := net.Dial("tcp", good)
	if err != nil {
		t.Fatal(err)
	}
	if err := BulkDigest(raw, client, 0, 1<<10, Digest(9)); err == nil || !strings.Contains(err.Error(), "unknown digest") {
		t.Errorf("unknown digest: %v", err)
	}
}
