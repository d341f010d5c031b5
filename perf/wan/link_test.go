package wan

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testLink runs a link between two datagram socket pairs, which stand in
// for the TUN devices (one packet per read and write, no root needed). It
// returns the outer ends: what is written to a comes out of b.
func testLink(t *testing.T, cfg Config) (l *Link, a, b int) {
	t.Helper()
	pair := func() [2]int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		}
		return [2]int{fds[0], fds[1]}
	}
	pa, pb := pair(), pair()
	l = NewLink(pa[1], pb[1], cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		for _, fd := range []int{pa[0], pa[1], pb[0], pb[1]} {
			unix.Close(fd)
		}
	})
	return l, pa[0], pb[0]
}

// send writes n packets of size bytes to fd, each stamped with its index
// and send time.
func send(t *testing.T, fd, n, size int) {
	t.Helper()
	buf := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		binary.BigEndian.PutUint64(buf[4:], uint64(monotonic()))
		for {
			_, err := unix.Write(fd, buf)
			if err == nil {
				break
			}
			if err != unix.EAGAIN {
				t.Fatal(err)
			}
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 100)
		}
	}
}

// received is one packet read at the far end.
type received struct {
	index     int
	sent, got int64
}

// receive reads n packets from fd, or what arrives before timeout.
func receive(t *testing.T, fd, n int, timeout time.Duration) []received {
	t.Helper()
	var out []received
	buf := make([]byte, MTU)
	deadline := monotonic() + int64(timeout)
	for len(out) < n {
		left := (deadline - monotonic()) / 1e6
		if left <= 0 {
			break
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left))
		k, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if k >= 12 {
			out = append(out, received{int(binary.BigEndian.Uint32(buf)), int64(binary.BigEndian.Uint64(buf[4:])), monotonic()})
		}
	}
	return out
}

func TestLinkDelayKeepsOrder(t *testing.T) {
	const delay, jitter = 20 * time.Millisecond, 5 * time.Millisecond
	_, a, b := testLink(t, Config{Delay: delay, Jitter: jitter})
	send(t, a, 200, 100)
	got := receive(t, b, 200, 5*time.Second)
	if len(got) != 200 {
		t.Fatalf("received %d of 200 packets", len(got))
	}
	for i, r := range got {
		if r.index != i {
			t.Fatalf("packet %d arrived in place %d: reordered", r.index, i)
		}
		if d := time.Duration(r.got - r.sent); d < delay {
			t.Errorf("packet %d took %s, less than the one-way delay %s", i, d, delay)
		}
	}
}

func TestLinkLoss(t *testing.T) {
	l, a, b := testLink(t, Config{Loss: 0.2})
	const n = 5000
	send(t, a, n, 100)
	// Read until every packet is accounted for (lost or received), or 10 s.
	var got []received
	var ab Stats
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		got = append(got, receive(t, b, n-len(got), 50*time.Millisecond)...)
		if ab, _ = l.Stats(); ab.Packets == n && ab.Lost+int64(len(got)) == n {
			break
		}
	}
	if ab.Packets != n || ab.Lost+ab.Sent != n || int64(len(got)) != ab.Sent {
		t.Fatalf("read %d, lost %d, sent %d, received %d; want every packet read once and either lost or received",
			ab.Packets, ab.Lost, ab.Sent, len(got))
	}
	// Binomial(5000, 0.2): mean 1000, σ 28; ±6σ.
	if ab.Lost < 830 || ab.Lost > 1170 {
		t.Errorf("lost %d of %d at 20%% loss", ab.Lost, n)
	}
}

func TestLinkRateAndTailDrop(t *testing.T) {
	const size = 1000
	// 8 Mbit/s: one 1000-byte packet per millisecond; the queue holds 20.
	l, a, b := testLink(t, Config{Rate: 8e6, Queue: 20 * size})
	send(t, a, 200, size)
	got := receive(t, b, 200, 2*time.Second)
	ab, _ := l.Stats()
	if ab.TailDrops == 0 || ab.Sent+ab.TailDrops != 200 || int64(len(got)) != ab.Sent {
		t.Fatalf("sent %d, tail drops %d, received %d of 200 in a burst into a 20-packet queue", ab.Sent, ab.TailDrops, len(got))
	}
	if ab.MaxQueue > 20*size {
		t.Errorf("queue reached %d bytes, limit %d", ab.MaxQueue, 20*size)
	}
	// Serialization: the k-th packet through leaves no sooner than k ms
	// after the first was sent.
	if span := time.Duration(got[len(got)-1].got - got[0].sent); span < time.Duration(len(got))*time.Millisecond {
		t.Errorf("%d packets went through within %s; at 8 Mbit/s they need %d ms", len(got), span, len(got))
	}
}

func TestConfigQueue(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"explicit", Config{Queue: 1234, Rate: 1e9, Delay: time.Second}, 1234},
		{"one BDP", Config{Rate: 500e6, Delay: 10 * time.Millisecond}, 1_250_000},
		{"at least 4 ms", Config{Rate: 500e6, Delay: time.Millisecond}, 250_000},
		{"at least 64 packets", Config{Rate: 1e6, Delay: time.Millisecond}, 64 * MTU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.queue(); got != tc.want {
				t.Errorf("queue() = %d, want %d", got, tc.want)
			}
		})
	}
}
