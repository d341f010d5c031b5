package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ewgw/ewgw/internal/tunnel"
)

// halfConn is a connection whose write side can be closed alone: a TCP
// connection, or a tunnel stream.
type halfConn interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetDeadline(time.Time) error
}

// pipe copies a and b both ways until both directions end, honouring
// half-close: when one side's reads end with EOF, the other side's write side
// is closed (TCP FIN), and the opposite direction carries on, for at most
// halfClose more. An error in either direction aborts both. It closes both
// connections before returning, and returns the bytes copied a→b and b→a.
//
// When a and b are both *net.TCPConn, io.Copy reaches
// (*net.TCPConn).ReadFrom, which uses splice(2): payload never enters user
// space. Nothing here wraps them, so that path is kept.
func pipe(a, b halfConn, halfClose time.Duration) (ab, ba int64, err error) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := copyHalf(b, a)
		done <- result{n, err}
	}()
	ba, errBA := copyHalf(a, b)
	if errBA != nil {
		abort(a, b)
	} else {
		extendDeadline(a, b, halfClose)
	}
	r := <-done
	ab = r.n
	if r.err != nil {
		abort(a, b)
	}
	a.Close()
	b.Close()
	return ab, ba, errors.Join(r.err, errBA)
}

// copyHalf copies src to dst and, on a clean end of src, half-closes dst.
func copyHalf(dst, src halfConn) (int64, error) {
	n, err := copyAuto(dst, src)
	if err != nil {
		return n, err
	}
	return n, dst.CloseWrite()
}

// smallCopy is the buffer for the start of a connection, see copyAuto.
const smallCopy = 16 << 10

var smallBufs = sync.Pool{New: func() any { return new([smallCopy]byte) }}

// copyAuto copies like io.Copy, but moves the first messages (handshakes,
// small requests and replies) with plain read and write calls, and hands
// over to io.Copy (and so splice(2) between TCP sockets) once a read fills
// the buffer, when the flow has turned into bulk transfer. Splicing a small
// message costs two calls through a pipe and often an EAGAIN, where a plain
// copy costs one read and one write. HAProxy's "splice-auto" makes the same
// choice.
func copyAuto(dst io.Writer, src io.Reader) (int64, error) {
	buf := smallBufs.Get().(*[smallCopy]byte)
	var written int64
	for {
		n, err := src.Read(buf[:])
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				smallBufs.Put(buf)
				return written, werr
			}
		}
		if err == io.EOF {
			smallBufs.Put(buf)
			return written, nil
		}
		if err != nil {
			smallBufs.Put(buf)
			return written, err
		}
		if n == len(buf) {
			break
		}
	}
	smallBufs.Put(buf)
	n, err := io.Copy(dst, src)
	return written + n, err
}

// extendDeadline bounds the remaining direction once one has finished, so a
// peer that never closes cannot hold the connection forever.
func extendDeadline(a, b halfConn, d time.Duration) {
	t := time.Now().Add(d)
	a.SetDeadline(t)
	b.SetDeadline(t)
}

// abort tears both sides down at once. TCP connections are reset rather than
// closed gracefully and tunnel streams are reset with CodeAborted, so an
// error on one side reaches the other as an error, not as a clean end of
// stream.
func abort(conns ...halfConn) {
	for _, c := range conns {
		switch c := c.(type) {
		case *net.TCPConn:
			c.SetLinger(0)
		case *tunnel.Stream:
			c.Abort(tunnel.CodeAborted)
		}
		c.SetDeadline(time.Unix(1, 0))
	}
}
