package testbed

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
)

// The bulk protocol checks both directions and half-close: the client sends
// an 8-byte big-endian length N, then its payload, then closes its write
// side. The server hashes everything up to EOF, replies with the SHA-256 it
// saw, then N bytes of Stream(N). A server that never saw EOF never answers,
// so a passing exchange proves the client's FIN arrived while its read side
// stayed open.

// ServeBulk is the server side of the bulk protocol.
func ServeBulk(c *tls.Conn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	if _, err := c.Write(h.Sum(nil)); err != nil {
		return
	}
	if _, err := io.Copy(c, Stream(2, int64(binary.BigEndian.Uint64(hdr[:])))); err != nil {
		return
	}
	c.CloseWrite()
}

// Stream returns n deterministic pseudo-random bytes for seed.
func Stream(seed byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
}

// Bulk runs the client side of the bulk protocol over a TLS connection on
// raw, which it closes: up bytes to the server, down bytes back, both
// checked by SHA-256.
func Bulk(raw net.Conn, cfg *tls.Config, up, down int64) error {
	return BulkTLS(tls.Client(raw, cfg), raw, up, down)
}

// BulkTLS is Bulk on a TLS client connection c over raw, which may have
// completed its handshake already.
func BulkTLS(c *tls.Conn, raw net.Conn, up, down int64) error {
	defer raw.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(down))
	if _, err := c.Write(hdr[:]); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	sent := sha256.New()
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
	var seen [32]byte
	if _, err := io.ReadFull(c, seen[:]); err != nil {
		return fmt.Errorf("read hash: %w", err)
	}
	if !bytes.Equal(sent.Sum(nil), seen[:]) {
		return errors.New("server saw different bytes than were sent")
	}
	got, want := sha256.New(), sha256.New()
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
