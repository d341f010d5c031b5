// Package pipe copies two connections into each other until both directions
// end, mapping half-close and errors across: TCP to TCP, and TCP to a tunnel
// stream, with the same rules.
package pipe

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is a connection whose write side can be closed alone: a TCP
// connection, or a tunnel stream.
type Conn interface {
	io.ReadWriteCloser
	// CloseWrite ends the write side: TCP FIN, or QUIC stream FIN.
	CloseWrite() error
	SetDeadline(time.Time) error
}

// Pipe copies a and b both ways until both directions end, and closes both.
//
//   - A clean end of reads on one side (TCP FIN, stream FIN) closes the other
//     side's write side, and the opposite direction carries on, for at most
//     halfClose more, so a half-open pair cannot live forever.
//   - An error in either direction aborts both: TCP connections are reset
//     (SO_LINGER 0, so close sends RST) and tunnel streams are reset (their
//     Close resets after a failed read or write), so a failure reaches the
//     far end as a failure, never as a clean end of stream.
//
// It returns the bytes copied a→b and b→a.
func Pipe(a, b Conn, halfClose time.Duration) (ab, ba int64, err error) {
	e := ends{a: a, b: b, halfClose: halfClose}
	type result struct {
		n   int64
		err error
	}
	sa, sb := newSides(a, b)
	done := make(chan result, 1)
	go func() {
		n, err := copyAuto(sb, sa)
		err = e.ended(sb, err)
		done <- result{n, err}
	}()
	ba, errBA := copyAuto(sa, sb)
	errBA = e.ended(sa, errBA)
	r := <-done
	a.Close()
	b.Close()
	return r.n, ba, errors.Join(r.err, errBA)
}

// ends reacts to each direction's end as it happens: the direction that
// fails aborts both at once, whatever the other is blocked in.
type ends struct {
	a, b      Conn
	halfClose time.Duration

	mu      sync.Mutex
	n       int // directions ended
	aborted bool
}

// ended takes the end of the direction that wrote to dst: a clean end
// (err nil) half-closes dst, a failure aborts both. It returns the
// direction's error, which is the half-close's if that failed.
func (e *ends) ended(dst *side, err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.aborted {
		return err
	}
	if err == nil && (e.n == 1 || dst.tcp == nil) {
		// After the last direction, closing a TCP connection sends the
		// same FIN (its input has ended, so close cannot reset it).
		err = dst.CloseWrite()
	}
	switch {
	case err != nil:
		e.aborted = true
		abort(e.a, e.b)
	case e.n == 1:
		deadline := time.Now().Add(e.halfClose)
		e.a.SetDeadline(deadline)
		e.b.SetDeadline(deadline)
	}
	return err
}

// side is one connection as the copy loops use it.
type side struct {
	Conn
	// io reads and writes Conn: with raw syscalls (rawTCP) between two TCP
	// connections on Linux, otherwise Conn itself.
	io io.ReadWriter
	// tcp is Conn if it is a *net.TCPConn.
	tcp *net.TCPConn
}

// newSides returns a and b as sides. Raw syscalls serve only between two
// TCP connections (the local path): with a tunnel stream on one side they
// left the median round trip as it was and raised its p99
// (docs/performance.md, "The splice path").
func newSides(a, b Conn) (sa, sb *side) {
	sa, sb = &side{Conn: a, io: a}, &side{Conn: b, io: b}
	sa.tcp, _ = a.(*net.TCPConn)
	sb.tcp, _ = b.(*net.TCPConn)
	if sa.tcp != nil && sb.tcp != nil {
		for _, s := range []*side{sa, sb} {
			if r, ok := newRawTCP(s.tcp); ok {
				s.io = r
			}
		}
	}
	return sa, sb
}

// abort makes both sides' pending reads and writes fail at once, and a TCP
// connection's close send RST.
func abort(conns ...Conn) {
	for _, c := range conns {
		if l, ok := c.(interface{ SetLinger(int) error }); ok {
			_ = l.SetLinger(0) // best effort: the close still ends the connection
		}
		c.SetDeadline(time.Unix(1, 0))
	}
}

// Buffer sizes. The first messages of a connection (handshakes, small
// requests and replies) go through a small buffer; bulk data to or from a
// tunnel stream through a large one, since small writes hand quic-go's
// connection goroutine little work at a time (quic-go #5091).
const (
	smallBuf = 16 << 10
	bulkBuf  = 64 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { return new([smallBuf]byte) }}
	bulkBufs  = sync.Pool{New: func() any { return new([bulkBuf]byte) }}
)

// copyAuto copies like io.Copy, but moves the first messages with plain read
// and write calls, and hands over to bulk copying once a read fills the
// small buffer. Between two TCP sockets, bulk copying splices (spliceRaw,
// else io.Copy's own splice): the payload never enters user space.
// Splicing a small message costs two calls through a pipe and often an
// EAGAIN where a plain copy costs one read and one write, so HAProxy's
// "splice-auto" makes the same choice.
func copyAuto(dst, src *side) (int64, error) {
	buf := smallBufs.Get().(*[smallBuf]byte)
	defer smallBufs.Put(buf)
	var written int64
	for {
		n, err := src.io.Read(buf[:])
		if n > 0 {
			w, werr := dst.io.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return written, nil
		}
		if err != nil {
			return written, err
		}
		if n == len(buf) {
			break
		}
	}
	n, err := copyBulk(dst, src)
	return written + n, err
}

func copyBulk(dst, src *side) (int64, error) {
	if n, handled, err := spliceRaw(dst.io, src.io); handled {
		return n, err
	}
	if dst.tcp != nil && src.tcp != nil {
		return io.Copy(dst.tcp, src.tcp)
	}
	buf := bulkBufs.Get().(*[bulkBuf]byte)
	defer bulkBufs.Put(buf)
	// Hide ReaderFrom and WriterTo, whose own smaller buffers would win.
	return io.CopyBuffer(struct{ io.Writer }{dst.io}, struct{ io.Reader }{src.io}, buf[:])
}
