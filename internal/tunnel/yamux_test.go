package tunnel

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// TestYamuxWindowCredit counts a TCP-transport stream's flow-control
// credit on the wire while its receive window auto-tunes up from 256 KiB:
// right after the receiver sends a window update, the credit it has given
// the sender and the sender has not yet used is its whole window less
// what it holds unread. go-yamux as released sends only the
// growth in an update that grows the window, losing the bytes read since
// the previous update (about half the old window per doubling): a 16 MiB
// window then gives the sender about 8 MiB, and one download across a
// 20 ms path ran at 0.75x the link (third_party/go-yamux.patch).
func TestYamuxWindowCredit(t *testing.T) {
	const (
		delay = 25 * time.Millisecond // each way: yamux measures a 50 ms RTT
		total = 96 << 20
		// initialWindow is yamux's fixed initial stream window.
		initialWindow = 256 << 10
	)
	rxConn, rxEnd := net.Pipe()
	txConn, txEnd := net.Pipe()
	tap := &creditTap{initial: initialWindow}
	// The tap sits at the receiver's end: data counts once the receiver
	// has taken it, updates as soon as the receiver sends them.
	go delayedRelay(txEnd, rxEnd, delay, nil, tap.data)
	go delayedRelay(rxEnd, txEnd, delay, tap.update, nil)

	tcfg := Config{}.withDefaults()
	cfg := tcfg.yamuxConfig()
	tx, err := yamux.Client(txConn, cfg, newTCPMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := yamux.Server(rxConn, cfg, newTCPMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()

	sent := make(chan error, 1)
	go func() {
		s, err := tx.OpenStream(t.Context())
		if err != nil {
			sent <- err
			return
		}
		buf := make([]byte, 64<<10)
		for n := 0; n < total; n += len(buf) {
			if _, err := s.Write(buf); err != nil {
				sent <- err
				return
			}
		}
		sent <- s.CloseWrite()
	}()
	s, err := rx.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, s)
	if err != nil || n != total {
		t.Fatalf("received %d of %d bytes: %v", n, total, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	best, deltas := tap.result()
	if len(deltas) < 5 {
		t.Fatalf("%d window updates, want at least 5", len(deltas))
	}
	last := slices.Clone(deltas[len(deltas)-5:])
	slices.Sort(last)
	half := last[2] // a plain update returns what was read: half the window
	t.Logf("%d window updates, the last ones %.2f MiB (half the window); most credit right after one: %.2f MiB",
		len(deltas), float64(half)/(1<<20), float64(best)/(1<<20))
	if half < 512<<10 {
		t.Fatalf("the window grew to %.2f MiB at most, want 1 MiB or more: it did not grow, so its credit was not checked", float64(2*half)/(1<<20))
	}
	// An eager reader holds a frame or two unread, so right after an
	// update the sender's credit is close to the whole window, twice what
	// an update returns; the released yamux leaves it near half.
	if best < half*3/2 {
		t.Errorf("most credit after a window update %.2f MiB, want about the window, %.2f MiB: the receiver keeps credit it never sent",
			float64(best)/(1<<20), float64(2*half)/(1<<20))
	}
}

// creditTap follows one direction of stream credit from yamux frames.
type creditTap struct {
	mu      sync.Mutex
	initial int64
	granted int64   // window update deltas the receiver sent
	taken   int64   // data bytes the receiver took
	best    int64   // most credit outstanding right after an update
	deltas  []int64 // each update's credit
}

func (c *creditTap) data(typ byte, _ uint16, id, length uint32) {
	if typ == yamuxTypeData && id != 0 {
		c.mu.Lock()
		c.taken += int64(length)
		c.mu.Unlock()
	}
}

func (c *creditTap) update(typ byte, flags uint16, id, length uint32) {
	if typ != yamuxTypeWindowUpdate || id == 0 || flags&yamuxFlagRST != 0 || length == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.granted += int64(length)
	c.deltas = append(c.deltas, int64(length))
	c.best = max(c.best, c.initial+c.granted-c.taken)
}

func (c *creditTap) result() (best int64, deltas []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.best, slices.Clone(c.deltas)
}

// yamux's frame header (its spec.md): version, type, flags, stream ID,
// length; a data frame's body follows its header.
const (
	yamuxHeaderSize       = 12
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxFlagRST          = 0x8
)

// frameReader calls on for each yamux frame header in a byte stream fed
// to it in pieces.
type frameReader struct {
	hdr  []byte
	skip uint32 // body bytes still to pass over
	on   func(typ byte, flags uint16, id, length uint32)
}

func (f *frameReader) feed(p []byte) {
	for len(p) > 0 {
		if f.skip > 0 {
			n := min(uint32(len(p)), f.skip)
			f.skip -= n
			p = p[n:]
			continue
		}
		n := min(yamuxHeaderSize-len(f.hdr), len(p))
		f.hdr = append(f.hdr, p[:n]...)
		p = p[n:]
		if len(f.hdr) < yamuxHeaderSize {
			return
		}
		typ, flags := f.hdr[1], binary.BigEndian.Uint16(f.hdr[2:])
		id, length := binary.BigEndian.Uint32(f.hdr[4:]), binary.BigEndian.Uint32(f.hdr[8:])
		f.hdr = f.hdr[:0]
		if typ == yamuxTypeData {
			f.skip = length
		}
		f.on(typ, flags, id, length)
	}
}

// delayedRelay copies from src to dst, each piece delay after it was
// read, reading on without waiting for the writes (a path with a delay
// and a deep buffer). onRead sees the frames as they are read, onWritten
// once dst has taken them.
func delayedRelay(src, dst net.Conn, delay time.Duration, onRead, onWritten func(byte, uint16, uint32, uint32)) {
	type piece struct {
		b   []byte
		due time.Time
	}
	q := make(chan piece, 1<<14)
	go func() {
		defer dst.Close()
		w := &frameReader{on: onWritten}
		for p := range q {
			time.Sleep(time.Until(p.due))
			if _, err := dst.Write(p.b); err != nil {
				return
			}
			if onWritten != nil {
				w.feed(p.b)
			}
		}
	}()
	defer close(q)
	r := &frameReader{on: onRead}
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b := append([]byte(nil), buf[:n]...)
			if onRead != nil {
				r.feed(b)
			}
			q <- piece{b, time.Now().Add(delay)}
		}
		if err != nil {
			return
		}
	}
}
