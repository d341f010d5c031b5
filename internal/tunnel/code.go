package tunnel

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrorCode is an application error code. It is carried in a stream's
// status frame, in RESET_STREAM and STOP_SENDING frames (RFC 9000 §19.4,
// §19.5) and in CONNECTION_CLOSE (RFC 9000 §19.19), so a peer learns why a
// stream or connection ended whichever of them it sees first. Values fit in
// one byte so the status frame stays two bytes long.
type ErrorCode uint64

// Error codes. CodeOK is also the code of a graceful stream or connection
// close.
const (
	// CodeOK means the stream was accepted, or closed without error.
	CodeOK ErrorCode = 0
	// CodeNotExported means the target service is not exported to the
	// opening peer.
	CodeNotExported ErrorCode = 1
	// CodeNoEndpoint means the target service has no ready local endpoint.
	CodeNoEndpoint ErrorCode = 2
	// CodeDialFailed means every local endpoint that was tried refused.
	CodeDialFailed ErrorCode = 3
	// CodeBadHeader means the stream header could not be decoded.
	CodeBadHeader ErrorCode = 4
	// CodeUnsupportedVersion means the stream header's version is unknown.
	CodeUnsupportedVersion ErrorCode = 5
	// CodeDenied means policy forbids the stream or connection.
	CodeDenied ErrorCode = 6
	// CodeShuttingDown means the receiver is draining and takes no new
	// streams.
	CodeShuttingDown ErrorCode = 7
	// CodeInternal means the receiver failed for a reason of its own.
	CodeInternal ErrorCode = 8
	// CodeAborted means one end of a spliced connection failed or was
	// reset, so the stream was reset rather than closed.
	CodeAborted ErrorCode = 9
	// CodeProtocol means the peer broke the control protocol.
	CodeProtocol ErrorCode = 10
	// CodeLeaseExpired means the peer received nothing from this side on
	// the connection for the lease this side announced, and dropped the
	// connection with the catalogue it carried.
	CodeLeaseExpired ErrorCode = 11
	// CodeBusy means the receiver is at a concurrency budget: a stream
	// refused because the gateway's connection budget is full.
	CodeBusy ErrorCode = 12
	// CodeLimit means the peer went over a budget this side sets: too
	// many services or bytes in its catalogue, or too many connections
	// from its identity. The connection is closed.
	CodeLimit ErrorCode = 13
	// CodeRevoked means the peer's certificate chain no longer passes this
	// side's trust and allow checks (Tunnel.Recheck); the connection is
	// closed.
	CodeRevoked ErrorCode = 14
	// CodeCertExpired means the peer's certificate reached its NotAfter on a
	// connection that was still open; a new handshake re-verifies it.
	CodeCertExpired ErrorCode = 15
	// CodePenalty means the peer broke a rule on an earlier connection
	// and new connections from it are refused for a while (penalty.go);
	// the close's reason says until when.
	CodePenalty ErrorCode = 16
	// CodeWrongTransport means the peer dialled a transport this side
	// does not use (Config.Transport); the close's reason names the one
	// it does.
	CodeWrongTransport ErrorCode = 17
)

var codeNames = [...]string{
	CodeOK:                 "ok",
	CodeNotExported:        "not_exported",
	CodeNoEndpoint:         "no_endpoint",
	CodeDialFailed:         "dial_failed",
	CodeBadHeader:          "bad_header",
	CodeUnsupportedVersion: "unsupported_version",
	CodeDenied:             "denied",
	CodeShuttingDown:       "shutting_down",
	CodeInternal:           "internal",
	CodeAborted:            "aborted",
	CodeProtocol:           "protocol",
	CodeLeaseExpired:       "lease_expired",
	CodeBusy:               "busy",
	CodeLimit:              "limit",
	CodeRevoked:            "revoked",
	CodeCertExpired:        "cert_expired",
	CodePenalty:            "penalty",
	CodeWrongTransport:     "wrong_transport",
}

// String returns the code's snake_case name, suitable as a metric label, or
// "code_N" for a code this version does not know.
func (c ErrorCode) String() string {
	if c < ErrorCode(len(codeNames)) {
		return codeNames[c]
	}
	return "code_" + strconv.FormatUint(uint64(c), 10)
}

// label is c's metric label: unknown codes share one value so the label set
// stays bounded.
func (c ErrorCode) label() string {
	if c < ErrorCode(len(codeNames)) {
		return codeNames[c]
	}
	return "unknown"
}

// RefusedError reports that the receiving gateway refused a stream. Open
// returns it before any byte of the server's reply has been read, so the
// caller may retry on another peer.
type RefusedError struct {
	// Peer is the configured name of the refusing peer.
	Peer string
	// Code says why.
	Code ErrorCode
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("stream refused by peer %s: %s", e.Peer, e.Code)
}

// Sentinel errors.
var (
	// ErrShuttingDown is returned by Open once shutdown has begun.
	ErrShuttingDown = errors.New("tunnel shutting down")
	// ErrNoConnection is returned by Open when no live connection to the
	// peer exists.
	ErrNoConnection = errors.New("no live connection to peer")
	// ErrUnknownPeer is returned by Open for a peer name not in Config.Peers.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrBadHeader wraps every stream header or control message decoding
	// error.
	ErrBadHeader = errors.New("bad header")
	// ErrUnsupportedVersion is returned when a header or control message
	// carries a version this code does not speak.
	ErrUnsupportedVersion = errors.New("unsupported version")
)

// codeOf maps a decoding error to the code a stream is refused with.
func codeOf(err error) ErrorCode {
	if errors.Is(err, ErrUnsupportedVersion) {
		return CodeUnsupportedVersion
	}
	return CodeBadHeader
}

// remoteCode returns the code of a stream or connection error caused by the
// peer, and whether there was one.
func remoteCode(err error) (ErrorCode, bool) {
	if code, ok := quicRemoteCode(err); ok {
		return code, true
	}
	return tcpRemoteCode(err)
}

// closeCode is the code a connection closed with, by either side, and
// whether it carried one.
func closeCode(err error) (ErrorCode, bool) {
	if code, ok := quicCloseCode(err); ok {
		return code, true
	}
	return tcpCloseCode(err)
}
