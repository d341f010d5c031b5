package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// captured returns the records of a hello in testdata/hellos.
func captured(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hellos", name+".bin"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// capturedNames lists the hellos in testdata/hellos.
func capturedNames(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "hellos", "*.bin"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no captured hellos: %v", err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f[:len(f)-len(".bin")]))
	}
	return names
}

// message returns the concatenated bodies of well-formed records.
func message(tb testing.TB, recs []byte) []byte {
	tb.Helper()
	var msg []byte
	for len(recs) > 0 {
		if len(recs) < recordHeaderLen {
			tb.Fatalf("%d bytes left over", len(recs))
		}
		n := int(recs[3])<<8 | int(recs[4])
		msg = append(msg, recs[recordHeaderLen:recordHeaderLen+n]...)
		recs = recs[recordHeaderLen+n:]
	}
	return msg
}

// records splits a handshake message into handshake records of at most size
// bytes each, with the legacy_record_version clients use (RFC 8446 §5.1).
func records(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// handshake prepends a ClientHello handshake header to a body.
func handshake(body []byte) []byte {
	n := len(body)
	return append([]byte{typeClientHello, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// ext is one extension for helloBody.
type ext struct {
	typ  uint16
	data []byte
}

// helloBody builds a TLS 1.3-style ClientHello body with the given
// extensions, in order.
func helloBody(exts ...ext) []byte {
	var b cryptobyte.Builder
	b.AddUint16(tls.VersionTLS12)
	b.AddBytes(make([]byte, 32))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(tls.TLS_AES_128_GCM_SHA256) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddUint16(e.typ)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
		}
	})
	return b.BytesOrPanic()
}

// sniExt builds a server_name extension (RFC 6066 §3) with host_name entries.
func sniExt(names ...string) ext {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, n := range names {
			b.AddUint8(nameTypeHostName)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
	})
	return ext{extServerName, b.BytesOrPanic()}
}

// goHello feeds data to a crypto/tls server and returns the ClientHelloInfo
// its GetConfigForClient saw, or nil when crypto/tls rejected the bytes
// before that.
func goHello(data []byte) *tls.ClientHelloInfo {
	var got *tls.ClientHelloInfo
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		got = chi
		return nil, errAbort
	}}
	_ = tls.Server(&memConn{r: bytes.NewReader(data)}, cfg).Handshake()
	return got
}

var errAbort = errors.New("abort after the hello")

// checkOracle asserts that wherever crypto/tls reads a ClientHello from
// data, Peek's result h, err agrees on the server name, ALPN and versions.
// Two differences are excused: errRecordLayer (Peek accepts handshake
// records of major version 3 only) and ErrTooLarge (the cap is the caller's).
func checkOracle(t *testing.T, data []byte, h *ClientHello, err error) {
	t.Helper()
	chi := goHello(data)
	if chi == nil || errors.Is(err, errRecordLayer) || errors.Is(err, ErrTooLarge) {
		return
	}
	wantErr := error(nil)
	if chi.ServerName == "" {
		wantErr = ErrNoSNI
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("crypto/tls read server name %q; Peek: %v", chi.ServerName, err)
	}
	if h.ServerName != chi.ServerName {
		t.Fatalf("server name %q, crypto/tls read %q", h.ServerName, chi.ServerName)
	}
	if !slices.Equal(h.ALPN, chi.SupportedProtos) {
		t.Fatalf("ALPN %q, crypto/tls read %q", h.ALPN, chi.SupportedProtos)
	}
	// Without supported_versions, crypto/tls lists the versions it knows up
	// to legacy_version; Peek reports legacy_version alone.
	if !slices.Equal(h.Versions, chi.SupportedVersions) &&
		(len(h.Versions) != 1 || len(chi.SupportedVersions) > 0 && chi.SupportedVersions[0] > h.Versions[0]) {
		t.Fatalf("versions %#x, crypto/tls read %#x", h.Versions, chi.SupportedVersions)
	}
	if h.ECHOuter && !slices.Contains(chi.Extensions, extECH) {
		t.Fatalf("ECHOuter without the extension; crypto/tls saw %#x", chi.Extensions)
	}
}

// memConn is a net.Conn that reads from r and discards writes.
type memConn struct{ r io.Reader }

func (c *memConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *memConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }
