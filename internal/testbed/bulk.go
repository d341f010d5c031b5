package testbed

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"sync"
)

// The bulk protocol checks both directions and half-close: the client sends
// an 8-byte header, its first byte the Digest both sides use and the other
// seven a big-endian length N, then its payload, then closes its write side.
// The server digests everything up to EOF, replies with the digest it saw,
// then N bytes of Stream(2, N). A server that never saw EOF never answers,
// so a passing exchange proves the client's FIN arrived while its read side
// stayed open.

// Digest is the checksum the bulk protocol compares.
type Digest byte

const (
	// SHA256 is the tests' check.
	SHA256 Digest = iota
	// CRC32C is the benchmarks' check: hardware CRC-32C costs a small
	// fraction of SHA-256's CPU, which on a small machine the client and
	// backend would otherwise take from the proxy under test. (The TLS
	// record layer's AEAD already rejects any byte a proxy alters; the
	// digest adds a check of order and length at the application layer.)
	CRC32C
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (d Digest) new() (hash.Hash, error) {
	switch d {
	case SHA256:
		return sha256.New(), nil
	case CRC32C:
		return crc32.New(castagnoli), nil
	}
	return nil, fmt.Errorf("unknown digest %d", d)
}

// maxBulk is the longest download the header can ask for.
const maxBulk = 1<<56 - 1

// header is the bulk protocol's header for digest d and a download of n
// bytes.
func header(d Digest, n int64) ([8]byte, error) {
	var hdr [8]byte
	if n < 0 || n > maxBulk {
		return hdr, fmt.Errorf("download of %d bytes: the header holds 0 to %d", n, int64(maxBulk))
	}
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	hdr[0] = byte(d)
	return hdr, nil
}

// readHeader reads a header from r and returns a new hash of its digest and
// the download length.
func readHeader(r io.Reader) (hash.Hash, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, err
	}
	h, err := Digest(hdr[0]).new()
	hdr[0] = 0
	return h, int64(binary.BigEndian.Uint64(hdr[:])), err
}

// ServeBulk is the server side of the bulk protocol.
func ServeBulk(c *tls.Conn) {
	h, n, err := readHeader(c)
	if err != nil {
		return
	}
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	if _, err := c.Write(h.Sum(nil)); err != nil {
		return
	}
	if _, err := io.Copy(c, Stream(2, n)); err != nil {
		return
	}
	c.CloseWrite()
}

// streamBlock is the period of Stream's base pattern.
const streamBlock = 64 << 10

// streamBases holds each seed's base block, made once.
var streamBases sync.Map // byte → *[streamBlock]byte

func streamBase(seed byte) *[streamBlock]byte {
	if b, ok := streamBases.Load(seed); ok {
		return b.(*[streamBlock]byte)
	}
	b := new([streamBlock]byte)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b[:]) // documented never to fail
	v, _ := streamBases.LoadOrStore(seed, b)
	return v.(*[streamBlock]byte)
}

// Stream returns n deterministic pseudo-random bytes for seed: one 64 KiB
// ChaCha8 block per seed, repeated, each repeat with its index (little
// endian) over its first 8 bytes, so no two blocks are alike and a lost,
// repeated or reordered block changes the digest. Generating every byte
// afresh cost a benchmark's client as much CPU as the proxy it measured.
func Stream(seed byte, n int64) io.Reader {
	return &stream{base: streamBase(seed), left: n}
}

type stream struct {
	base      *[streamBlock]byte
	off, left int64
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.left)]
	n := 0
	for n < len(p) {
		i, o := s.off/streamBlock, s.off%streamBlock
		m := copy(p[n:], s.base[o:])
		if o < 8 {
			var idx [8]byte
			binary.LittleEndian.PutUint64(idx[:], uint64(i))
			copy(p[n:n+m], idx[o:])
		}
		n += m
		s.off += int64(m)
	}
	s.left -= int64(n)
	return n, nil
}

// Bulk runs the client side of the bulk protocol over a TLS connection on
// raw, which it closes: up bytes to the server, down bytes back, both
// checked by SHA-256.
func Bulk(raw net.Conn, cfg *tls.Config, up, down int64) error {
	return BulkDigest(raw, cfg, up, down, SHA256)
}

// BulkDigest is Bulk checked with d.
func BulkDigest(raw net.Conn, cfg *tls.Config, up, down int64, d Digest) error {
	return bulk(tls.Client(raw, cfg), raw, up, down, d)
}

// BulkTLS is Bulk on a TLS client connection c over raw, which may have
// completed its handshake already.
func BulkTLS(c *tls.Conn, raw net.Conn, up, down int64) error {
	return bulk(c, raw, up, down, SHA256)
}

func bulk(c *tls.Conn, raw net.Conn, up, down int64, d Digest) error {
	defer raw.Close()
	sent, err := d.new()
	if err != nil {
		return err
	}
	hdr, err := header(d, down)
	if err != nil {
		return err
	}
	if _, err := c.Write(hdr[:]); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if _, err := io.Copy(io.MultiWriter(c, sent), Stream(1, up)); err != nil {
		return fmt.Errorf("write payload: %w", err)
	}
	// Half-close: TLS close_notify, then TCP FIN.
	if err := c.CloseWrite(); err != nil {
		return err
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return err
		}
	}
	seen := make([]byte, sent.Size())
	if _, err := io.ReadFull(c, seen); err != nil {
		return fmt.Errorf("read digest: %w", err)
	}
	if !bytes.Equal(sent.Sum(nil), seen) {
		return errors.New("server saw different bytes than were sent")
	}
	got, _ := d.new()
	want, _ := d.new()
	n, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("read payload after %d bytes: %w", n, err)
	}
	io.Copy(want, Stream(2, down))
	if n != down || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return fmt.Errorf("downstream: got %d bytes, want %d, hashes equal: %v", n, down, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	return nil
}
