package wan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"
)

// PingResult summarises echo requests the way ping(8) does.
type PingResult struct {
	Sent, Received      int
	Min, Avg, Max, Mdev time.Duration
}

// String formats r like ping(8)'s summary.
func (r PingResult) String() string {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return fmt.Sprintf("%d packets transmitted, %d received, %.1f%% packet loss; rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms",
		r.Sent, r.Received, 100*float64(r.Sent-r.Received)/float64(r.Sent), ms(r.Min), ms(r.Avg), ms(r.Max), ms(r.Mdev))
}

// Ping sends count ICMP echo requests of 56 data bytes to addr, one every
// interval, waits up to wait after the last for replies, and summarises
// them. It needs a raw socket (root), in the caller's namespace.
func Ping(addr string, count int, interval, wait time.Duration) (PingResult, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return PingResult{}, err
	}
	defer c.Close()
	dst := &net.IPAddr{IP: net.ParseIP(addr)}
	id := uint16(os.Getpid())
	rtts := make(chan time.Duration, count)
	done := make(chan struct{})
	go func() { defer close(done); readReplies(c, id, count, rtts) }()
	start := time.Now()
	for seq := range count {
		time.Sleep(time.Until(start.Add(time.Duration(seq) * interval)))
		if _, err := c.WriteTo(echoRequest(id, uint16(seq)), dst); err != nil {
			return PingResult{}, err
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	<-done
	close(rtts)
	return summarise(count, rtts), nil
}

// echoRequest builds an ICMP echo request (RFC 792) whose data starts with
// the send time.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+56)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// readReplies reads echo replies for id until count arrived or the socket's
// deadline, sending each one's round trip to rtts.
func readReplies(c net.PacketConn, id uint16, count int, rtts chan<- time.Duration) {
	buf := make([]byte, 1500)
	seen := map[uint16]bool{}
	for len(seen) < count {
		n, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < 16 || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != id {
			continue
		}
		seq := binary.BigEndian.Uint16(buf[6:])
		if seen[seq] {
			continue
		}
		seen[seq] = true
		rtts <- time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:]))))
	}
}

func summarise(sent int, rtts <-chan time.Duration) PingResult {
	r := PingResult{Sent: sent, Min: math.MaxInt64}
	var sum, sq float64
	for d := range rtts {
		r.Received++
		r.Min, r.Max = min(r.Min, d), max(r.Max, d)
		sum += float64(d)
		sq += float64(d) * float64(d)
	}
	if r.Received == 0 {
		r.Min = 0
		return r
	}
	mean := sum / float64(r.Received)
	r.Avg = time.Duration(mean)
	r.Mdev = time.Duration(math.Sqrt(max(0, sq/float64(r.Received)-mean*mean)))
	return r
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
