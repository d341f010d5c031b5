package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ewgw/ewgw/internal/tunnel/param"
)

// Transport names what carries a peering connection (param.Transport).
type Transport = param.Transport

// Transports: QUIC over UDP, TLS over TCP with yamux streams (tcp.go), or
// QUIC falling back to TCP per peer (fallback.go).
const (
	TransportQUIC = param.TransportQUIC
	TransportTCP  = param.TransportTCP
	TransportAuto = param.TransportAuto
)

// session is one authenticated connection to a peer gateway that carries
// streams both ways.
type session interface {
	// OpenStream opens a stream, waiting while the peer's stream limit is
	// reached.
	OpenStream(ctx context.Context) (pstream, error)
	// AcceptStream returns the next stream the peer opened.
	AcceptStream(ctx context.Context) (pstream, error)
	// CloseWithError closes the connection, telling the peer code.
	CloseWithError(code ErrorCode, reason string)
	// Context ends when the connection closes; its cause is why.
	Context() context.Context
	// TLS is the handshake's state: the peer's chain and SPIFFE ID.
	TLS() tls.ConnectionState
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Received counts what arrived from the peer (QUIC packets, TCP
	// reads): it grows while the peer is heard.
	Received() uint64
	// Path is what the transport knows of the path, for status.
	Path() pathStats
	// RTT is the smoothed round-trip time and its mean deviation, cheap
	// enough for every stream open (Path may take a system call).
	RTT() (smoothed, deviation time.Duration)
	// Transport names the transport.
	Transport() Transport
}

// pathStats is what a transport knows of a connection's path: quic-go's
// statistics, or the kernel's TCP_INFO (tcpinfo_linux.go; elsewhere a TCP
// session knows yamux's RTT only).
type pathStats struct {
	RTT                      time.Duration
	CongestionWindow         uint64
	PacketsSent, PacketsLost uint64
	GSO                      bool
}

// pstream is one stream of a session.
type pstream interface {
	io.ReadWriter
	// CloseWrite sends FIN: the peer reads EOF after what was written.
	CloseWrite() error
	// CancelRead stops reading; the peer's writes may fail with code.
	CancelRead(code ErrorCode)
	// Reset ends both directions with code; unsent data is dropped.
	Reset(code ErrorCode)
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	// Control reports whether this is the dialer's first stream, the
	// control stream.
	Control() bool
}

// quicSession is a QUIC connection as a session.
type quicSession struct{ qc *quic.Conn }

func (s quicSession) OpenStream(ctx context.Context) (pstream, error) {
	qs, err := s.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{qs}, nil
}

func (s quicSession) AcceptStream(ctx context.Context) (pstream, error) {
	qs, err := s.qc.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{qs}, nil
}

func (s quicSession) CloseWithError(code ErrorCode, reason string) {
	s.qc.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

func (s quicSession) Context() context.Context { return s.qc.Context() }
func (s quicSession) TLS() tls.ConnectionState { return s.qc.ConnectionState().TLS }
func (s quicSession) LocalAddr() net.Addr      { return s.qc.LocalAddr() }
func (s quicSession) RemoteAddr() net.Addr     { return s.qc.RemoteAddr() }
func (s quicSession) Received() uint64         { return s.qc.ConnectionStats().PacketsReceived }
func (s quicSession) Transport() Transport     { return TransportQUIC }

func (s quicSession) RTT() (time.Duration, time.Duration) {
	st := s.qc.ConnectionStats()
	return st.SmoothedRTT, st.MeanDeviation
}

func (s quicSession) Path() pathStats {
	st := s.qc.ConnectionStats()
	return pathStats{RTT: st.SmoothedRTT, CongestionWindow: st.CongestionWindow,
		PacketsSent: st.PacketsSent, PacketsLost: st.PacketsLost, GSO: s.qc.ConnectionState().GSO}
}

// quicStream is a QUIC stream as a pstream.
type quicStream struct{ qs *quic.Stream }

func (s quicStream) Read(b []byte) (int, error)  { return s.qs.Read(b) }
func (s quicStream) Write(b []byte) (int, error) { return s.qs.Write(b) }
func (s quicStream) CloseWrite() error           { return s.qs.Close() }
func (s quicStream) CancelRead(code ErrorCode)   { s.qs.CancelRead(quic.StreamErrorCode(code)) }

// Reset sends RESET_STREAM and STOP_SENDING (RFC 9000 §19.4–19.5).
func (s quicStream) Reset(code ErrorCode) {
	s.qs.CancelWrite(quic.StreamErrorCode(code))
	s.qs.CancelRead(quic.StreamErrorCode(code))
}

func (s quicStream) SetDeadline(t time.Time) error      { return s.qs.SetDeadline(t) }
func (s quicStream) SetReadDeadline(t time.Time) error  { return s.qs.SetReadDeadline(t) }
func (s quicStream) SetWriteDeadline(t time.Time) error { return s.qs.SetWriteDeadline(t) }
func (s quicStream) Control() bool                      { return s.qs.StreamID() == 0 }

// quicRemoteCode is the code of a QUIC stream or connection error the peer
// caused.
func quicRemoteCode(err error) (ErrorCode, bool) {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return ErrorCode(se.ErrorCode), true
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return ErrorCode(ae.ErrorCode), true
	}
	return 0, false
}

// quicCloseCode is the application code a QUIC connection closed with,
// either side's.
func quicCloseCode(err error) (ErrorCode, bool) {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return ErrorCode(ae.ErrorCode), true
	}
	return 0, false
}
