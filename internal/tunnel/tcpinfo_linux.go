package tunnel

import (
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

// tcpCongestion is the congestion control of the TCP transport's sockets.
// A tunnel connection lives for days and carries bursts between idle
// spells: under CUBIC it keeps a slow-start threshold from its last loss
// and restarts from ten segments after each idle spell
// (tcp_slow_start_after_idle), so one download across a 20 ms path climbed
// for seconds (perf/RESULTS.md, "The TCP transport"). BBR paces at the
// bandwidth it measured instead.
const tcpCongestion = "bbr"

// tuneTCP sets the TCP transport's congestion control on c, where the
// kernel offers it to unprivileged sockets
// (net.ipv4.tcp_allowed_congestion_control); elsewhere c keeps the
// system's default.
func tuneTCP(c net.Conn) bool {
	var err error
	return control(c, func(fd int) {
		err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, tcpCongestion)
	}) && err == nil
}
