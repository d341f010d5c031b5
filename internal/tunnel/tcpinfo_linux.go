package tunnel

import (
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPath reads what the kernel knows of a TCP connection's path
// (TCP_INFO): RTT, congestion window, segments sent and retransmitted.
func tcpPath(c net.Conn) (pathStats, bool) {
	var info *unix.TCPInfo
	var err error
	if !control(c, func(fd int) { info, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO) }) || err != nil {
		return pathStats{}, false
	}
	return pathStats{
		RTT:              time.Duration(info.Rtt) * time.Microsecond,
		CongestionWindow: uint64(info.Snd_cwnd) * uint64(info.Snd_mss),
		PacketsSent:      uint64(info.Segs_out), PacketsLost: uint64(info.Total_retrans),
	}, true
}

// control runs f on c's socket, if c is a TCP connection.
func control(c net.Conn, f func(fd int)) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	return err == nil && raw.Control(func(fd uintptr) { f(int(fd)) }) == nil
}

// setCongestion sets the congestion control of c, a TCP connection, to
// name: refused where the kernel does not offer name to this process
// (net.ipv4.tcp_allowed_congestion_control, for a process without
// CAP_NET_ADMIN).
func setCongestion(c net.Conn, name string) error {
	var err error
	if !control(c, func(fd int) { err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, name) }) {
		return errors.New("not a TCP connection")
	}
	return err
}
