//go:build linux

package proxy

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestListenOptions: accepted connections carry the keepalive settings of
// the listening socket (the kernel's inheritance, which Listen relies on to
// skip per-connection setsockopt calls), and the listener defers accepts.
func TestListenOptions(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	// With TCP_DEFER_ACCEPT the accept completes only once data arrives.
	if _, err := c.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	defer s.Close()
	raw, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	}
	raw.Control(func(fd uintptr) {
		for _, w := range want {
			got, err := syscall.GetsockoptInt(int(fd), w.level, w.opt)
			if err != nil || got != w.v {
				t.Errorf("accepted connection: %s = %d, %v; want %d", w.name, got, err, w.v)
			}
		}
	})
	lraw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	lraw.Control(func(fd uintptr) {
		// The kernel stores the deferral as SYN-ACK retransmissions and
		// reports it back rounded up to their schedule, at least 3 s.
		if got, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT); err != nil || got < 3 {
			t.Errorf("listener TCP_DEFER_ACCEPT = %d, %v; want ≥ 3", got, err)
		}
	})
}
