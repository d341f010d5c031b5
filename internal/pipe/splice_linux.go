//go:build linux

package pipe

import (
	"io"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// pipeSize is the kernel pipe buffer a splice moves through, and the most one
// splice(2) call asks for; 1 MiB is /proc/sys/fs/pipe-max-size's default, as
// in the standard library's own splice path.
const pipeSize = 1 << 20

// kpipe is a kernel pipe for splicing. Pipes are pooled: a pipe costs three
// syscalls to make and two to close.
type kpipe struct {
	r, w int
	data int // bytes in the pipe: non-zero only if a copy failed mid-way
}

var kpipes = sync.Pool{New: func() any {
	p, err := newKpipe()
	if err != nil {
		return err
	}
	return p
}}

func newKpipe() (*kpipe, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &kpipe{r: fds[0], w: fds[1]}
	// A smaller pipe still works, only with more calls per byte.
	_, _ = unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize)
	runtime.AddCleanup(p, func(fds [2]int) {
		// Nothing is left to tell about a pipe no one holds.
		_ = syscall.Close(fds[0])
		_ = syscall.Close(fds[1])
	}, fds)
	return p, nil
}

func getKpipe() (*kpipe, error) {
	switch v := kpipes.Get().(type) {
	case *kpipe:
		return v, nil
	default:
		return nil, v.(error)
	}
}

// putKpipe pools p, unless data was left in it: such a pipe is dropped and
// its cleanup closes it.
func putKpipe(p *kpipe) {
	if p.data == 0 {
		kpipes.Put(p)
	}
}

// rawSplice moves up to n bytes from in to out with splice(2); the pipe
// side is non-blocking by flag, the socket side by its O_NONBLOCK.
func rawSplice(out, in, n int) (int, syscall.Errno) {
	return rawSyscall(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
}

// spliceRaw copies src to dst through a kernel pipe until src ends, when
// both are rawTCP, waiting on the runtime's poller between calls as
// (*net.TCPConn).ReadFrom does. handled is false, and nothing was read,
// when either is not a rawTCP or no pipe could be had.
func spliceRaw(dst, src io.ReadWriter) (written int64, handled bool, err error) {
	d, dok := dst.(*rawTCP)
	s, sok := src.(*rawTCP)
	if !dok || !sok {
		return 0, false, nil
	}
	p, err := getKpipe()
	if err != nil {
		return 0, false, nil
	}
	defer putKpipe(p)
	// The pipe is empty before each drain, so a drain's EAGAIN means the
	// socket has nothing to read; the pump empties the pipe into dst.
	var n int
	var errno syscall.Errno
	drain := func(fd uintptr) bool {
		n, errno = rawSplice(p.w, int(fd), pipeSize)
		return errno != syscall.EAGAIN
	}
	pump := func(fd uintptr) bool {
		for p.data > 0 {
			m, e := rawSplice(int(fd), p.r, p.data)
			if e == syscall.EAGAIN {
				return false
			}
			if errno = e; e != 0 {
				return true
			}
			p.data -= m
			written += int64(m)
		}
		return true
	}
	for {
		errno = 0
		if err := syscallErr("splice", s.rc.Read(drain), errno); err != nil {
			return written, true, err
		}
		if n == 0 {
			return written, true, nil // EOF
		}
		p.data = n
		errno = 0
		if err := syscallErr("splice", d.rc.Write(pump), errno); err != nil {
			return written, true, err
		}
	}
}
