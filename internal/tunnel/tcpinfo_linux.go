package tunnel

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPath reads what the kernel knows of a TCP connection's path
// (TCP_INFO): RTT, congestion window, segments sent and retransmitted.
func tcpPath(c net.Conn) (pathStats, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return pathStats{}, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return pathStats{}, false
	}
	var info *unix.TCPInfo
	cerr := raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil || err != nil {
		return pathStats{}, false
	}
	return pathStats{
		RTT: time.Duration(info.Rtt) * time.Microsecond, RTTVar: time.Duration(info.Rttvar) * time.Microsecond,
		CongestionWindow: uint64(info.Snd_cwnd) * uint64(info.Snd_mss),
		PacketsSent:      uint64(info.Segs_out), PacketsLost: uint64(info.Total_retrans),
	}, true
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
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, tcpCongestion)
	}); err != nil {
		return false
	}
	return serr == nil
}
