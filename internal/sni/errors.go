package sni

import (
	"errors"
	"net"
	"os"
)

// Errors returned by Peek, for errors.Is. Reason maps each to a metric label.
var (
	// ErrNotTLS reports that the first record is not a TLS handshake record:
	// plain HTTP, an SSLv2-compatible hello, or any other protocol.
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrNoSNI reports a well-formed ClientHello without a host_name server
	// name. Peek returns the parsed hello alongside it.
	ErrNoSNI = errors.New("no server name")
	// ErrTruncated reports that the reader ended before the ClientHello did.
	ErrTruncated = errors.New("truncated ClientHello")
	// ErrTooLarge reports that the records carrying the ClientHello would
	// exceed the size cap given to Peek.
	ErrTooLarge = errors.New("ClientHello too large")
	// ErrTimeout reports that the reader timed out (the caller's read
	// deadline passed) before the ClientHello was complete.
	ErrTimeout = errors.New("ClientHello read timeout")
	// ErrMalformed reports TLS handshake records whose content is not a
	// well-formed ClientHello.
	ErrMalformed = errors.New("malformed ClientHello")
)

// errRecordLayer marks rejections where Peek is stricter than crypto/tls
// about the record layer: it wants handshake records with major version 3
// only, where crypto/tls also skips warning alerts before the hello and takes
// any record version below 0x1000. The fuzz oracle uses it; it is always
// wrapped together with ErrNotTLS or ErrMalformed.
var errRecordLayer = errors.New("unexpected record type or version")

// Reason returns a short, bounded label for an error from Peek, for use as a
// metric label: "not_tls", "no_sni", "truncated", "too_large", "timeout",
// "malformed", "io_error" for any other error, and "" for nil.
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

// isTimeout reports whether a read error is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
