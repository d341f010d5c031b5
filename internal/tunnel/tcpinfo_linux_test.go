package tunnel

import (
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
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !tuneTCP(c) {
		t.Fatal("tuneTCP failed")
	}
	raw, _ := c.(*net.TCPConn).SyscallConn()
	var got string
	raw.Control(func(fd uintptr) { got, err = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION) })
	if err != nil || strings.TrimRight(got, "\x00") != tcpCongestion {
		t.Errorf("congestion control %q (%v), want %s", got, err, tcpCongestion)
	}
	if st, ok := tcpPath(c); !ok || st.CongestionWindow == 0 {
		t.Errorf("TCP_INFO path %+v, %v", st, ok)
	}
}
