// Package sni reads a TLS ClientHello from a reader without consuming
// anything past it, so the bytes read can be replayed upstream unchanged and
// the rest of the connection copied raw.
package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// DefaultMaxSize is the default cap on the bytes Peek reads (16 KiB).
const DefaultMaxSize = 16 << 10

// TLS record layer constants (RFC 8446 §5.1).
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxPlaintext        = 1 << 14 // TLSPlaintext.length MUST NOT exceed 2^14
	handshakeHeaderLen  = 4
	typeClientHello     = 1
)

// Errors Peek returns, for errors.Is. Each has a metric label via Reason.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record (plain
	// HTTP, an SSLv2-compatible hello, anything else).
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrNoSNI: a valid ClientHello without a host_name server name.
	ErrNoSNI = errors.New("no server name")
	// ErrTruncated: the stream ended before the ClientHello did.
	ErrTruncated = errors.New("truncated ClientHello")
	// ErrTooLarge: the ClientHello records exceed the size cap.
	ErrTooLarge = errors.New("ClientHello too large")
	// ErrTimeout: the read deadline passed before the ClientHello arrived.
	ErrTimeout = errors.New("ClientHello timeout")
	// ErrMalformed: TLS handshake records whose ClientHello does not parse.
	ErrMalformed = errors.New("malformed ClientHello")
)

// ClientHello is what Peek learned from a ClientHello.
type ClientHello struct {
	// ServerName is the host_name from the server_name extension
	// (RFC 6066 §3), exactly as sent.
	ServerName string
	// ALPN lists the offered application protocols (RFC 7301).
	ALPN []string
	// Versions lists supported_versions (RFC 8446 §4.2.1), or the
	// legacy_version when that extension is absent.
	Versions []uint16
	// ECHOuter is set when the hello carries an outer
	// encrypted_client_hello extension (RFC 9849 §5): the real server name
	// is encrypted and ServerName is the public (client-facing) name.
	ECHOuter bool
	// Raw is every byte read from the reader, for replay upstream.
	Raw []byte
}

// Peek reads exactly the TLS records that carry one ClientHello from r and
// parses it. It reads record headers and bodies with io.ReadFull into one
// buffer, never past the last record of the hello, so the caller can copy
// the rest of a *net.TCPConn raw (keeping splice). maxSize <= 0 means
// DefaultMaxSize. Deadlines are the caller's: set one on the connection, and
// a timeout comes back as ErrTimeout. On ErrNoSNI the parsed hello is
// returned too; on other errors Raw holds what was read.
func Peek(r io.Reader, maxSize int) (*ClientHello, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	raw := make([]byte, 0, 2048)
	var msg []byte // the handshake message, reassembled across records
	for {
		start := len(raw)
		var err error
		if raw, err = readN(r, raw, recordHeaderLen); err != nil {
			return &ClientHello{Raw: raw}, err
		}
		hdr := raw[start:]
		if err := checkRecordHeader(hdr, start == 0); err != nil {
			return &ClientHello{Raw: raw}, err
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if len(raw)+n > maxSize {
			return &ClientHello{Raw: raw}, fmt.Errorf("%w: over %d bytes", ErrTooLarge, maxSize)
		}
		if raw, err = readN(r, raw, n); err != nil {
			return &ClientHello{Raw: raw}, err
		}
		msg = append(msg, raw[len(raw)-n:]...)
		if len(msg) < handshakeHeaderLen {
			continue
		}
		if msg[0] != typeClientHello {
			return &ClientHello{Raw: raw}, fmt.Errorf("%w: handshake type %d", ErrMalformed, msg[0])
		}
		total := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if total+recordHeaderLen > maxSize {
			return &ClientHello{Raw: raw}, fmt.Errorf("%w: hello of %d bytes", ErrTooLarge, total)
		}
		if len(msg) < total {
			continue
		}
		hello, err := parseHello(msg[handshakeHeaderLen:total])
		if hello == nil {
			hello = &ClientHello{}
		}
		hello.Raw = raw
		return hello, err
	}
}

// checkRecordHeader validates one record header. The first decides whether
// the stream is TLS at all; later ones continue a fragmented hello, and must
// be handshake records too (RFC 8446 §5.1: handshake messages may span
// records, but must not interleave with other record types).
func checkRecordHeader(hdr []byte, first bool) error {
	if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
		if first {
			return fmt.Errorf("%w: first bytes %x", ErrNotTLS, hdr[:3])
		}
		return fmt.Errorf("%w: record type %d inside the hello", ErrMalformed, hdr[0])
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n == 0 || n > maxPlaintext {
		// Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
		return fmt.Errorf("%w: record length %d", ErrMalformed, n)
	}
	return nil
}

// readN appends exactly n bytes from r to buf.
func readN(r io.Reader, buf []byte, n int) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	got, err := io.ReadFull(r, buf[start:])
	buf = buf[:start+got]
	switch {
	case err == nil:
		return buf, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return buf, fmt.Errorf("%w: after %d bytes", ErrTruncated, len(buf))
	case isTimeout(err):
		return buf, fmt.Errorf("%w: after %d bytes: %w", ErrTimeout, len(buf), err)
	}
	return buf, fmt.Errorf("read ClientHello: %w", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// Reason returns a short, bounded label for a Peek error, for metrics:
// not_tls, no_sni, truncated, too_large, timeout, malformed, io_error; ""
// for nil.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotTLS):
		return "not_tls"
	case errors.Is(err, ErrNoSNI):
		return "no_sni"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "io_error"
}
