package wan

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Config shapes both directions of the link alike.
type Config struct {
	// Delay is the one-way propagation delay; the round trip is twice it.
	Delay time.Duration `json:"delay"`
	// Jitter adds a uniform random delay in [0, Jitter) per packet (packets
	// still leave in order).
	Jitter time.Duration `json:"jitter"`
	// Loss is the probability that a packet is dropped, per direction.
	Loss float64 `json:"loss"`
	// Rate is the bottleneck in bits per second; 0 is no limit.
	Rate float64 `json:"rate"`
	// Queue is the drop-tail queue in bytes in front of the bottleneck;
	// 0 is one bandwidth-delay product (Rate × 2·Delay), but at least
	// 4 ms at the rate and 64 full-size packets (a router buffers a few
	// milliseconds whatever the path's RTT).
	Queue int `json:"queue"`
}

// String formats c the way the reports name a link.
func (c Config) String() string {
	rate := "unlimited"
	if c.Rate > 0 {
		rate = fmt.Sprintf("%g Mbit/s", c.Rate/1e6)
	}
	return fmt.Sprintf("RTT %s, jitter %s, loss %g%%, rate %s, queue %d B", 2*c.Delay, c.Jitter, c.Loss*100, rate, c.queue())
}

// queue returns the drop-tail limit in bytes.
func (c Config) queue() int {
	if c.Queue > 0 {
		return c.Queue
	}
	return max(int(c.Rate/8*max(2*c.Delay, 4*time.Millisecond).Seconds()), 64*MTU)
}

// MTU is the link's MTU, and the largest packet the forwarder carries.
const MTU = 1500

// slots is the number of packet buffers per direction: enough for a full
// queue plus a one-way delay's worth of packets in flight at 1 Gbit/s and
// 80 ms RTT, with room to spare.
const slots = 16384

// Link forwards packets both ways between two TUN devices.
type Link struct {
	ab, ba *pipe
}

// NewLink returns a link between the TUN file descriptors a and b, shaped
// by cfg. Run starts it.
func NewLink(a, b int, cfg Config) *Link {
	l := &Link{ab: newPipe(a, b), ba: newPipe(b, a)}
	l.Set(cfg)
	return l
}

// Set reshapes both directions; packets already queued keep their times.
func (l *Link) Set(cfg Config) {
	l.ab.cfg.Store(&cfg)
	l.ba.cfg.Store(&cfg)
}

// Config returns the current shape.
func (l *Link) Config() Config { return *l.ab.cfg.Load() }

// Stats returns the counters of each direction since the last Reset.
func (l *Link) Stats() (ab, ba Stats) { return l.ab.stats.snapshot(), l.ba.stats.snapshot() }

// Reset zeroes the counters of both directions.
func (l *Link) Reset() { l.ab.stats.reset(); l.ba.stats.reset() }

// Run forwards until ctx ends or a device fails.
func (l *Link) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, f := range []func(context.Context) error{l.ab.read, l.ab.write, l.ba.read, l.ba.write} {
		wg.Go(func() {
			errs[i] = f(ctx)
			cancel()
		})
	}
	wg.Wait()
	// The first failure cancels the others; only real errors are news.
	for i, err := range errs {
		if errors.Is(err, context.Canceled) {
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

// packet is one buffered packet and when it is due at the far end, in
// nanoseconds of CLOCK_MONOTONIC.
type packet struct {
	buf []byte
	due int64
}

// pipe is one direction.
type pipe struct {
	in, out int
	cfg     atomic.Pointer[Config]
	free    chan []byte
	queue   chan packet
	rng     *rand.Rand
	stats   stats
	// Reader state: when the bottleneck finishes sending what it holds,
	// and when the last packet is due (packets never overtake it).
	busyUntil, lastDue int64
}

func newPipe(in, out int) *pipe {
	p := &pipe{in: in, out: out, free: make(chan []byte, slots), queue: make(chan packet, slots),
		rng: rand.New(rand.NewPCG(uint64(in), uint64(out)))}
	mem := make([]byte, slots*MTU)
	for i := range slots {
		p.free <- mem[i*MTU : (i+1)*MTU : (i+1)*MTU]
	}
	return p
}

// read moves packets from the input device into the queue, dropping the
// ones the link loses.
func (p *pipe) read(ctx context.Context) error {
	spare := make([]byte, MTU)
	fds := []unix.PollFd{{Fd: int32(p.in), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		if _, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll tun: %w", err)
		}
		for {
			buf := spare
			select {
			case buf = <-p.free:
			default:
			}
			n, err := unix.Read(p.in, buf)
			if err == unix.EAGAIN || err == unix.EINTR {
				p.recycle(buf, spare)
				break
			}
			if err != nil {
				return fmt.Errorf("read tun: %w", err)
			}
			p.admit(buf[:n], &buf[0] != &spare[0])
		}
	}
	return ctx.Err()
}

// recycle returns buf to the free list unless it is the spare.
func (p *pipe) recycle(buf, spare []byte) {
	if &buf[0] != &spare[0] {
		p.free <- buf[:cap(buf)]
	}
}

// admit decides the fate of one packet read: lost, dropped at the tail of
// a full queue, or queued with the time it is due at the far end.
func (p *pipe) admit(pkt []byte, pooled bool) {
	s := &p.stats
	s.packets.Add(1)
	s.bytes.Add(int64(len(pkt)))
	if !pooled {
		s.noBuffer.Add(1)
		return
	}
	c := p.cfg.Load()
	if c.Loss > 0 && p.rng.Float64() < c.Loss {
		s.lost.Add(1)
		p.free <- pkt[:cap(pkt)]
		return
	}
	now := monotonic()
	depart := now
	if c.Rate > 0 {
		start := max(now, p.busyUntil)
		backlog := int(float64(start-now) * c.Rate / 8e9)
		if backlog+len(pkt) > c.queue() {
			s.tailDrops.Add(1)
			p.free <- pkt[:cap(pkt)]
			return
		}
		s.maxQueue.raise(int64(backlog + len(pkt)))
		p.busyUntil = start + int64(float64(len(pkt))*8e9/c.Rate)
		depart = p.busyUntil
	}
	due := depart + int64(c.Delay)
	if c.Jitter > 0 {
		due += p.rng.Int64N(int64(c.Jitter))
	}
	due = max(due, p.lastDue)
	p.lastDue = due
	p.queue <- packet{buf: pkt, due: due}
}

// write sends each queued packet to the output device when it is due.
func (p *pipe) write(ctx context.Context) error {
	// Sleep precisely: this thread's timer slack 1 ns instead of 50 µs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // best effort: finer timer slack
	for {
		var pkt packet
		select {
		case <-ctx.Done():
			return ctx.Err()
		case pkt = <-p.queue:
		}
		if late := sleepUntil(pkt.due); late > time.Millisecond {
			p.stats.late.Add(1)
		}
		_, err := unix.Write(p.out, pkt.buf)
		p.free <- pkt.buf[:cap(pkt.buf)]
		if err != nil && err != unix.EAGAIN && err != unix.EIO {
			// EIO: the far device is down for a moment; a packet lost.
			return fmt.Errorf("write tun: %w", err)
		}
		p.stats.sent.Add(1)
	}
}

// base pairs Go's monotonic clock with CLOCK_MONOTONIC once, so monotonic
// costs a vDSO call rather than a system call.
var base = func() struct {
	t    time.Time
	mono int64
} {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return struct {
		t    time.Time
		mono int64
	}{time.Now(), ts.Nano()}
}()

// monotonic returns CLOCK_MONOTONIC in nanoseconds.
func monotonic() int64 { return base.mono + int64(time.Since(base.t)) }

// sleepUntil blocks the thread until CLOCK_MONOTONIC reaches due (Go's
// timers are coarser than a serialization slot) and returns how late it
// woke.
func sleepUntil(due int64) time.Duration {
	if monotonic() < due {
		ts := unix.NsecToTimespec(due)
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
		}
	}
	return time.Duration(monotonic() - due)
}
