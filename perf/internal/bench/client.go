package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ewgw/ewgw/internal/testbed"
)

// ClientConfig returns the client's TLS config for server name. Session
// resumption stays off (no ClientSessionCache), so every new connection is a
// full TLS 1.3 handshake.
func ClientConfig(base *tls.Config, name string) *tls.Config {
	c := base.Clone()
	c.ServerName = name
	return c
}

// Bulk runs one bulk-protocol exchange (SHA-256 checked both ways) and
// returns the payload rate in Gbit/s, from the dial to the last byte
// received: the client checks the downloaded bytes only after that, and that
// check is not transfer time.
func Bulk(addr string, cfg *tls.Config, up, down int64) (float64, error) {
	start := time.Now()
	last, err := bulkOnce(addr, cfg, up, down)
	if err != nil {
		return 0, err
	}
	return Gbits(up+down, last.Sub(start)), nil
}

// BulkParallel runs n bulk exchanges at once, each moving up and down
// bytes, and returns the aggregate payload rate in Gbit/s, from the first
// dial to the last byte received on any of them.
func BulkParallel(addr string, cfg *tls.Config, n int, up, down int64) (float64, error) {
	lasts := make([]time.Time, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { lasts[i], errs[i] = bulkOnce(addr, cfg, up, down) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return Gbits(int64(n)*(up+down), slices.MaxFunc(lasts, time.Time.Compare).Sub(start)), nil
}

// bulkOnce runs one bulk exchange and returns when its last byte arrived.
func bulkOnce(addr string, cfg *tls.Config, up, down int64) (time.Time, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return time.Time{}, err
	}
	tc := &timedConn{TCPConn: raw.(*net.TCPConn)}
	if err := testbed.BulkDigest(tc, ClientConfig(cfg, NameBulk), up, down, testbed.CRC32C); err != nil {
		return time.Time{}, err
	}
	return tc.last, nil
}

// timedConn records when its last successful read returned, and the bytes
// read.
type timedConn struct {
	*net.TCPConn
	last time.Time
	read atomic.Int64
}

func (c *timedConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if n > 0 {
		c.last = time.Now()
		c.read.Add(int64(n))
	}
	return n, err
}

// Download runs n bulk downloads at once, each for d, and returns the
// aggregate rate in Gbit/s from the first dial to the last byte received.
// It counts bytes off the wire (TLS records: 0.1 % more than the payload),
// so a transfer that never finishes still measures.
func Download(addr string, cfg *tls.Config, n int, d time.Duration) (float64, error) {
	conns := make([]*timedConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		conns[i] = &timedConn{}
		wg.Go(func() { errs[i] = downloadFor(addr, cfg, start.Add(d), conns[i]) })
	}
	wg.Wait()
	var total int64
	var last time.Time
	for i, c := range conns {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += c.read.Load()
		if c.last.After(last) {
			last = c.last
		}
	}
	return Gbits(total, last.Sub(start)), nil
}

// Trace runs one download for d and returns its rate in Mbit/s in each
// step from the dial on.
func Trace(addr string, cfg *tls.Config, d, step time.Duration) ([]float64, error) {
	tc := &timedConn{}
	done := make(chan error, 1)
	go func() { done <- downloadFor(addr, cfg, time.Now().Add(d), tc) }()
	var out []float64
	tick := time.NewTicker(step)
	defer tick.Stop()
	var prev int64
	for {
		select {
		case err := <-done:
			return out, err
		case <-tick.C:
			n := tc.read.Load()
			out = append(out, float64(n-prev)*8/step.Seconds()/1e6)
			prev = n
		}
	}
}

// downloadFor asks for an endless bulk download and reads it into tc
// until deadline.
func downloadFor(addr string, cfg *tls.Config, deadline time.Time, tc *timedConn) error {
	raw, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return err
	}
	tc.TCPConn = raw.(*net.TCPConn)
	raw.SetDeadline(deadline)
	err = testbed.BulkDigest(tc, ClientConfig(cfg, NameBulk), 0, 1<<50, testbed.CRC32C)
	if n := tc.read.Load(); n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("download: %d bytes, %w", n, err)
	}
	return nil
}

// OpenIdle opens n TLS connections to addr (handshake done, then nothing),
// workers at a time, and returns them.
func OpenIdle(addr string, cfg *tls.Config, n, workers int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && firstErr.Load() == nil; i = int(next.Add(1) - 1) {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, ClientConfig(cfg, NameEcho))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		CloseAll(conns)
		return nil, fmt.Errorf("open idle connections: %w", err)
	}
	return conns, nil
}

// CloseAll closes every non-nil connection of conns.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// Gbits returns n bytes in d as Gbit/s.
func Gbits(n int64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e9 }

// NewConnRoundTrip dials addr, completes a TLS 1.3 handshake, sends msg and
// reads as many bytes back. It returns the time from the start of the dial to
// the first response byte.
func NewConnRoundTrip(ctx context.Context, addr string, cfg *tls.Config, msg []byte) (time.Duration, error) {
	start := time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c := tls.Client(raw, ClientConfig(cfg, NameEcho))
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	n, err := c.Read(buf)
	if err != nil {
		return 0, err
	}
	ttfb := time.Since(start)
	if _, err := io.ReadFull(c, buf[n:]); err != nil {
		return 0, err
	}
	return ttfb, c.Close()
}

// EchoOnce makes one new TLS connection and one 64-byte echo round trip.
func EchoOnce(addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := NewConnRoundTrip(ctx, addr, cfg, make([]byte, 64))
	return err
}

// WaitReady waits up to d for one echo round trip through addr.
func WaitReady(addr string, cfg *tls.Config, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := EchoOnce(addr, cfg)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ConnRate runs workers that each loop over NewConnRoundTrip for d, and
// returns completed connections per second.
func ConnRate(addr string, cfg *tls.Config, workers int, d time.Duration) (float64, error) {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			msg := make([]byte, 64)
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := NewConnRoundTrip(ctx, addr, cfg, msg)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		return 0, fmt.Errorf("%d of %d connections failed, first: %v", n, n+ok.Load(), firstErr.Load())
	}
	return float64(ok.Load()) / elapsed.Seconds(), nil
}

// TTFB makes n sequential new connections, or as many as fit in limit if
// that is not zero, and returns the time to first response byte of each.
func TTFB(addr string, cfg *tls.Config, n int, limit time.Duration) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	msg := make([]byte, 64)
	stop := time.Now().Add(limit)
	for range n {
		if limit > 0 && len(out) > 0 && time.Now().After(stop) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := NewConnRoundTrip(ctx, addr, cfg, msg)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// WarmRTT makes one TLS connection and times n echo round trips of size
// bytes on it, after warmup untimed ones; if limit is not zero, it stops
// timing when limit has passed.
func WarmRTT(addr string, cfg *tls.Config, size, warmup, n int, limit time.Duration) ([]time.Duration, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	c := tls.Client(raw, ClientConfig(cfg, NameEcho))
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	msg, buf := make([]byte, size), make([]byte, size)
	out := make([]time.Duration, 0, n)
	var stop time.Time
	for i := range warmup + n {
		if i == warmup {
			stop = time.Now().Add(limit)
		}
		if limit > 0 && i > warmup && time.Now().After(stop) {
			break
		}
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if i >= warmup {
			out = append(out, time.Since(start))
		}
	}
	return out, c.Close()
}

// Percentile returns the q-quantile (0..1) of ds by nearest rank.
func Percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median returns the median of v (the mean of the middle two for an even
// count); v is left as it was.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// P50P99 returns the median and 99th percentile of ds.
func P50P99(ds []time.Duration) (p50, p99 time.Duration) {
	return Percentile(ds, 0.5), Percentile(ds, 0.99)
}

// MedianOf returns the median of one field of several samples.
func MedianOf[S any](ss []S, field func(S) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = field(s)
	}
	return Median(v)
}

// Micros formats d in microseconds.
func Micros(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// Added formats v-base in microseconds with a sign, "–" if a test was
// skipped (either is zero).
func Added(v, base time.Duration) string {
	if v == 0 || base == 0 {
		return "–"
	}
	return fmt.Sprintf("%+.0f µs", float64(v-base)/1e3)
}

// Ratio formats v/base, "–" if a test was skipped (either is zero).
func Ratio(v, base float64) string {
	if v == 0 || base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/base)
}
