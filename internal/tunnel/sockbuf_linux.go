package tunnel

import (
	"net"
	"syscall"
)

// wantSockBuf is the socket buffer size quic-go asks for (7 MiB). Linux
// reports twice the size that was set (socket(7)), so a buffer that really
// got 7 MiB reads back as 14 MiB; anything below 7 MiB read back means the
// kernel capped the request at net.core.rmem_max or wmem_max.
const wantSockBuf = 7 << 20

// checkBuffers warns when the kernel refused the UDP buffer sizes quic-go
// asked for: at high rates the socket then drops packets. Raising
// net.core.rmem_max and net.core.wmem_max to 7340032 fixes it, or running
// with CAP_NET_ADMIN, which lets quic-go force the size.
func (t *Tunnel) checkBuffers(pc net.PacketConn, what string) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		t.log.Warn("udp socket is not a syscall.Conn: quic-go cannot use GSO, ECN or batching", "socket", what)
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	raw.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	if rcv < wantSockBuf || snd < wantSockBuf {
		t.log.Warn("udp socket buffers smaller than quic-go wants; raise net.core.rmem_max and net.core.wmem_max to 7340032",
			"socket", what, "rcvbuf", rcv, "sndbuf", snd, "want", wantSockBuf)
		return
	}
	t.log.Debug("udp socket buffers", "socket", what, "rcvbuf", rcv, "sndbuf", snd)
}
