//go:build linux

package pipe

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawTCP reads and writes a TCP connection's descriptor with raw syscalls
// (see rawSplice for why), waiting on the runtime's poller between them
// exactly as (*net.TCPConn).Read and Write do, deadlines included. One
// reader and one writer may use it at once, as with a net.Conn.
type rawTCP struct {
	rc syscall.RawConn
	r  rawOp // the read in progress
	w  rawOp // the write in progress
	// Bound once, so a call allocates no closure.
	readFn, writeFn func(fd uintptr) bool
}

// rawOp is one read or write: its buffer, the bytes done, its error.
type rawOp struct {
	b     []byte
	n     int
	errno syscall.Errno
}

func newRawTCP(c *net.TCPConn) (io.ReadWriter, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false
	}
	r := &rawTCP{rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r, true
}

func (r *rawTCP) read(fd uintptr) bool {
	r.r.n, r.r.errno = rawRW(syscall.SYS_READ, fd, r.r.b)
	return r.r.errno != syscall.EAGAIN
}

func (r *rawTCP) write(fd uintptr) bool {
	w := &r.w
	for w.n < len(w.b) {
		m, e := rawRW(syscall.SYS_WRITE, fd, w.b[w.n:])
		if e == syscall.EAGAIN {
			return false
		}
		if w.errno = e; e != 0 {
			return true
		}
		w.n += m
	}
	return true
}

// Read reads into b; a clean end of stream is io.EOF.
func (r *rawTCP) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.r = rawOp{b: b}
	err := r.rc.Read(r.readFn)
	op := r.r
	r.r = rawOp{}
	switch {
	case err != nil:
		return 0, err
	case op.errno != 0:
		return 0, os.NewSyscallError("read", op.errno)
	case op.n == 0:
		return 0, io.EOF
	}
	return op.n, nil
}

// Write writes all of b unless an error stops it.
func (r *rawTCP) Write(b []byte) (int, error) {
	r.w = rawOp{b: b}
	err := r.rc.Write(r.writeFn)
	op := r.w
	r.w = rawOp{}
	if err == nil && op.errno != 0 {
		err = os.NewSyscallError("write", op.errno)
	}
	return op.n, err
}

// rawRW is read(2) or write(2) on a non-empty b.
func rawRW(trap uintptr, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}
