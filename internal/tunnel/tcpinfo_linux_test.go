package tunnel

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTuneTCP: where the kernel lets unprivileged sockets use BBR, the
// TCP transport's sockets use it, and TCP_INFO reports their path.
func TestTuneTCP(t *testing.T) {
	allowed, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
	if !strings.Contains(string(allowed), tcpCongestion) {
		t.Skipf("%s is not allowed here (%q)", tcpCongestion, allowed)
	}
	c := loopbackDialer(t)()
	var log bytes.Buffer
	tn := &Tunnel{log: newTextLogger(&log)}
	tn.tuneTCP(c, tcpCongestion)
	if log.Len() > 0 {
		t.Fatalf("tuneTCP logged: %s", log.String())
	}
	var got string
	var err error
	control(c, func(fd int) { got, err = unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION) })
	if err != nil || strings.TrimRight(got, "\x00") != tcpCongestion {
		t.Errorf("congestion control %q (%v), want %s", got, err, tcpCongestion)
	}
	if st, ok := tcpPath(c); !ok || st.CongestionWindow == 0 {
		t.Errorf("TCP_INFO path %+v, %v", st, ok)
	}
}

// TestTuneTCPRefused: a congestion control the kernel does not offer
// leaves the socket on the system's default, and the log says so once.
func TestTuneTCPRefused(t *testing.T) {
	dial := loopbackDialer(t)
	var log bytes.Buffer
	tn := &Tunnel{log: newTextLogger(&log)}
	for range 3 {
		tn.tuneTCP(dial(), "no-such-congestion-control")
	}
	if n := strings.Count(log.String(), "keep the system's congestion control"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "net.ipv4.tcp_allowed_congestion_control") {
		t.Errorf("the log line does not say what to change: %s", log.String())
	}
}

// loopbackDialer listens on loopback TCP until the test ends and returns
// a dialer of connections to it, each closed when the test ends.
func loopbackDialer(t *testing.T) func() net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}
