//go:build linux

package pipe

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawSyscall issues a syscall without the runtime's syscall bookkeeping
// (entersyscall/exitsyscall), retrying EINTR. Every descriptor this package
// passes is non-blocking, so the call returns after the kernel's own work,
// never waiting. Issued as a blocking-capable syscall, a long one (loopback
// transmit runs the receiver's TCP processing inline) lets the runtime's
// monitor take the P from the goroutine and hand it to another thread it
// must wake, and every first one after the process went idle wakes the
// monitor itself; on a busy VM that costs more than the call.
func rawSyscall(trap, a1, a2, a3, a4, a5, a6 uintptr) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// syscallErr returns err, the poller's (a deadline, a closed descriptor),
// if there is one, else errno as a named *os.SyscallError, else nil.
func syscallErr(name string, err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		return err
	case errno != 0:
		return os.NewSyscallError(name, errno)
	}
	return nil
}

// rawTCP reads and writes a TCP connection's descriptor with rawSyscall,
// waiting on the runtime's poller between calls exactly as
// (*net.TCPConn).Read and Write do, deadlines included; spliceRaw copies
// between two of them. One reader and one writer may use it at once, as
// with a net.Conn.
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
	err := syscallErr("read", r.rc.Read(r.readFn), r.r.errno)
	n := r.r.n
	r.r = rawOp{}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b unless an error stops it.
func (r *rawTCP) Write(b []byte) (int, error) {
	r.w = rawOp{b: b}
	err := syscallErr("write", r.rc.Write(r.writeFn), r.w.errno)
	n := r.w.n
	r.w = rawOp{}
	return n, err
}

// rawRW is read(2) or write(2) on a non-empty b.
func rawRW(trap uintptr, fd uintptr, b []byte) (int, syscall.Errno) {
	return rawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
}
