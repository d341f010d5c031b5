package tunnel

import (
	"errors"
	"io"
	"net"
	"time"
)

// spliceBuf is the copy buffer size: large writes hand more to quic-go's
// connection goroutine at once (small writes are slow, quic-go #5091).
const spliceBuf = 64 << 10

// Splice copies between a TCP connection and a stream until both directions
// end, and closes both. It maps TCP and QUIC semantics onto each other:
//
//   - TCP read EOF (the client's FIN) → s.CloseWrite (QUIC FIN), and the
//     other direction carries on;
//   - stream read EOF (the peer's FIN) → tcp.CloseWrite (TCP FIN);
//   - a TCP error or RST → the stream is reset with CodeAborted;
//   - a stream reset, or any other stream error → the TCP connection is
//     reset (SO_LINGER 0, then close sends RST).
//
// Once one direction has ended cleanly the other gets halfClose (zero means
// DefaultHalfCloseTimeout) to finish, so a half-open pair cannot live
// forever. Both directions of the stream are finished before Splice
// returns, which returns the stream's credit to the peer.
//
// up counts bytes from tcp to s, down from s to tcp.
func Splice(tcp *net.TCPConn, s *Stream, halfClose time.Duration) (up, down int64, err error) {
	if halfClose <= 0 {
		halfClose = DefaultHalfCloseTimeout
	}
	type result struct {
		n   int64
		err error
	}
	upDone := make(chan result, 1)
	go func() {
		n, err := copyUp(s, tcp)
		if err != nil {
			abortPair(tcp, s)
		} else {
			extend(tcp, s, halfClose)
		}
		upDone <- result{n, err}
	}()
	down, errDown := copyDown(tcp, s)
	if errDown != nil {
		abortPair(tcp, s)
	} else {
		extend(tcp, s, halfClose)
	}
	r := <-upDone
	s.Close() // resets instead if either side failed
	tcp.Close()
	return r.n, down, errors.Join(r.err, errDown)
}

// copyUp copies TCP to the stream and sends FIN on the client's FIN.
// Neither side's ReaderFrom or WriterTo is used, so the buffer size holds.
func copyUp(s *Stream, tcp *net.TCPConn) (int64, error) {
	n, err := io.CopyBuffer(struct{ io.Writer }{s}, struct{ io.Reader }{tcp}, make([]byte, spliceBuf))
	if err != nil {
		return n, err
	}
	return n, s.CloseWrite()
}

// copyDown copies the stream to TCP and sends FIN on the peer's FIN.
func copyDown(tcp *net.TCPConn, s *Stream) (int64, error) {
	n, err := io.CopyBuffer(struct{ io.Writer }{tcp}, struct{ io.Reader }{s}, make([]byte, spliceBuf))
	if err != nil {
		return n, err
	}
	return n, tcp.CloseWrite()
}

// abortPair resets both ends: the stream with CodeAborted, the TCP
// connection with RST, which also unblocks the other direction's copy.
func abortPair(tcp *net.TCPConn, s *Stream) {
	s.Abort(CodeAborted)
	tcp.SetLinger(0)
	tcp.SetDeadline(time.Unix(1, 0))
}

// extend bounds the remaining direction after one ended cleanly.
func extend(tcp *net.TCPConn, s *Stream, d time.Duration) {
	t := time.Now().Add(d)
	tcp.SetDeadline(t)
	s.SetDeadline(t)
}
