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
