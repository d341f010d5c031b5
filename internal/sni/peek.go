// Package sni reads a TLS ClientHello from a reader without consuming
// anything past it, so that the bytes read can be replayed upstream unchanged
// and the rest of the connection copied raw (keeping Linux splice).
package sni

import (
	"errors"
	"fmt"
	"io"
)

// DefaultMaxSize is the default cap on the bytes Peek reads (16 KiB).
const DefaultMaxSize = 16 << 10

// TLS record and handshake layer constants (RFC 8446 §5.1, §4).
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxPlaintext        = 1 << 14 // TLSPlaintext.length MUST NOT exceed 2^14
	handshakeHeaderLen  = 4       // msg_type and uint24 length
	typeClientHello     = 1
)

// Peek reads exactly the TLS records that carry one ClientHello from r,
// never a byte more, and parses it. Each record header is read, then its body
// with io.ReadFull into one plain buffer; r is not wrapped or buffered, so a
// caller holding a *net.TCPConn can copy the rest of the stream with splice.
//
// maxSize caps the bytes read; maxSize <= 0 means DefaultMaxSize. Deadlines
// are the caller's: set one on the connection, and a timeout comes back as
// ErrTimeout. On success and on ErrNoSNI the parsed hello is returned; on
// every error the returned hello is non-nil and its Raw holds what was read.
func Peek(r io.Reader, maxSize int) (*ClientHello, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	p := peeker{r: r, max: maxSize, raw: make([]byte, 0, min(maxSize, 2048))}
	msg, err := p.readMessage()
	if err != nil {
		return &ClientHello{Raw: p.raw}, err
	}
	h, err := parseHello(msg)
	if err != nil && !errors.Is(err, ErrNoSNI) {
		return &ClientHello{Raw: p.raw}, err
	}
	h.Raw = p.raw
	return h, err
}

// peeker reads handshake records from r into raw, up to max bytes.
type peeker struct {
	r   io.Reader
	max int
	raw []byte
}

// readMessage returns the body of the first handshake message, which must
// be a ClientHello. Handshake messages may be fragmented across several
// records (RFC 8446 §5.1), so it reassembles them; a single-record hello is
// returned in place, without a copy.
func (p *peeker) readMessage() ([]byte, error) {
	var msg []byte
	for first := true; ; first = false {
		frag, err := p.readRecord(first)
		if err != nil {
			return nil, err
		}
		if first {
			msg = frag
		} else {
			msg = append(msg[:len(msg):len(msg)], frag...)
		}
		if msg[0] != typeClientHello {
			return nil, fmt.Errorf("%w: handshake type %d", ErrMalformed, msg[0])
		}
		if len(msg) < handshakeHeaderLen {
			continue
		}
		total := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if len(msg) >= total {
			// Bytes after the hello in its last record are left unparsed:
			// they are still replayed upstream with Raw.
			return msg[handshakeHeaderLen:total], nil
		}
		if len(p.raw)+recordHeaderLen+total-len(msg) > p.max {
			return nil, fmt.Errorf("%w: %d-byte hello over the %d-byte cap", ErrTooLarge, total, p.max)
		}
	}
}

// readRecord reads one record and returns its body, a slice of p.raw. The
// first record decides whether the stream is TLS at all; later ones continue
// a fragmented hello, and handshake messages must not be interleaved with
// other record types (RFC 8446 §5.1).
func (p *peeker) readRecord(first bool) ([]byte, error) {
	if err := p.read(recordHeaderLen); err != nil {
		return nil, err
	}
	hdr := p.raw[len(p.raw)-recordHeaderLen:]
	// ContentType handshake(22) and a legacy_record_version of 3.x
	// (RFC 8446 §5.1, RFC 5246 §6.2.1). An SSLv2-compatible hello starts
	// with a byte that has the high bit set (RFC 5246 Appendix E.2).
	if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
		if first {
			return nil, fmt.Errorf("%w: %w: first bytes %x", ErrNotTLS, errRecordLayer, hdr[:3])
		}
		return nil, fmt.Errorf("%w: %w: record %x inside the hello", ErrMalformed, errRecordLayer, hdr[:3])
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n == 0 || n > maxPlaintext {
		// Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
		return nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
	}
	if err := p.read(n); err != nil {
		return nil, err
	}
	return p.raw[len(p.raw)-n:], nil
}

// read appends exactly n bytes from r to p.raw, or as many as arrived before
// an error, and maps the error to Peek's.
func (p *peeker) read(n int) error {
	start := len(p.raw)
	if start+n > p.max {
		return fmt.Errorf("%w: over the %d-byte cap", ErrTooLarge, p.max)
	}
	p.raw = append(p.raw, make([]byte, n)...)
	got, err := io.ReadFull(p.r, p.raw[start:])
	p.raw = p.raw[:start+got]
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: ended after %d bytes", ErrTruncated, len(p.raw))
	case isTimeout(err):
		return fmt.Errorf("%w: after %d bytes: %w", ErrTimeout, len(p.raw), err)
	}
	return fmt.Errorf("read ClientHello: %w", err)
}
