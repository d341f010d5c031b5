package tunnel

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// The fork's receive queue (third_party/quic-go.patch): a connection
// holds at most 256 packets for its run loop until the handshake
// completes, then 4096.
const (
	handshakeQueue = 256
	connQueue      = 4096
)

// replayConn is a server's socket that reads a real UDP socket and keeps
// the client's first long-header datagram (its Initial) and its latest
// short-header one, and can hand the transport copies of either as if the
// client had sent them again.
type replayConn struct {
	net.PacketConn
	real    chan datagram // read from the socket
	errs    chan error    // its read errors
	inject  chan datagram
	entered chan struct{} // ReadFrom was called
	done    chan struct{}
	reals   atomic.Int64 // datagrams from the socket handed to the transport
	calls   atomic.Int64 // ReadFrom calls so far

	// taken counts the injected copies handed to the transport, lastCopy
	// is the ReadFrom call that took the latest.
	taken, lastCopy int64

	mu             sync.Mutex
	initial, short datagram
}

type datagram struct {
	b    []byte
	from net.Addr
}

func newReplayConn(t *testing.T) *replayConn {
	t.Helper()
	udp := bindUDP(t, "127.0.0.1:0")
	c := &replayConn{PacketConn: udp, real: make(chan datagram), errs: make(chan error), inject: make(chan datagram),
		entered: make(chan struct{}, 1), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			b := make([]byte, 1500)
			n, from, err := udp.ReadFrom(b)
			if err != nil { // Transport.Close sets a past read deadline
				select {
				case c.errs <- err:
				case <-c.done:
					return
				}
				continue
			}
			select {
			case c.real <- datagram{b[:n], from}:
			case <-c.done:
				return
			}
		}
	})
	t.Cleanup(func() {
		close(c.done)
		udp.Close()
		wg.Wait()
	})
	return c
}

// SetReadBuffer and SetWriteBuffer let quic-go size the socket's buffers.
func (c *replayConn) SetReadBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetReadBuffer(n)
}

func (c *replayConn) SetWriteBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n)
}

// ReadFrom is what quic-go's transport reads: an injected copy or the
// next datagram from the socket. Its transport handles one datagram (and
// queues it for its connection, or drops it) before reading the next.
func (c *replayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	call := c.calls.Add(1)
	select {
	case c.entered <- struct{}{}:
	default:
	}
	select {
	case d := <-c.inject:
		c.mu.Lock()
		c.taken++
		c.lastCopy = call
		c.mu.Unlock()
		return copy(b, d.b), d.from, nil
	case d := <-c.real:
		c.reals.Add(1)
		c.mu.Lock()
		if d.b[0]&0x80 == 0 {
			c.short = d
		} else if c.initial.b == nil {
			c.initial = d
		}
		c.mu.Unlock()
		return copy(b, d.b), d.from, nil
	case err := <-c.errs:
		return 0, nil, err
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

// replay hands the transport n copies of d and returns once it has
// handled the last: it handles one datagram before it reads the next.
func (c *replayConn) replay(t *testing.T, d datagram, n int) {
	t.Helper()
	c.mu.Lock()
	want := c.taken + int64(n)
	c.mu.Unlock()
	for range n {
		select {
		case c.inject <- d:
		case <-time.After(waitTimeout):
			t.Fatal("the transport stopped reading")
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		c.mu.Lock()
		handled := c.taken >= want && c.calls.Load() > c.lastCopy
		c.mu.Unlock()
		if handled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the transport did not read again after the last copy")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (c *replayConn) kept() (initial, short datagram) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.initial, c.short
}

// gate is the server connection's qlog trace. Armed, it holds the
// connection's run loop at the next packet the loop processes, so that
// whatever arrives meanwhile waits in the receive queue; it counts the
// packets dropped because that queue was full.
type gate struct {
	dropped atomic.Int64

	mu      sync.Mutex
	held    chan struct{} // non-nil while armed
	release chan struct{} // the armed hold's
}

func (g *gate) AddProducer() qlogwriter.Recorder { return g }
func (g *gate) Close() error                     { return nil }

func (g *gate) RecordEvent(ev qlogwriter.Event) {
	switch e := ev.(type) {
	case qlog.PacketDropped: // the run loop drops duplicates; the transport, what the queue cannot hold
		if e.Trigger == qlog.PacketDropDOSPrevention {
			g.dropped.Add(1)
			return
		}
	case qlog.PacketReceived:
	default:
		return
	}
	g.mu.Lock()
	held, release := g.held, g.release
	g.held = nil
	g.mu.Unlock()
	if held != nil {
		close(held)
		<-release
	}
}

// arm holds the run loop at its next packet; held is closed once it is,
// and release lets it go on (and may be called again, so that a test
// that stops early defers it and leaves no loop held).
func (g *gate) arm() (held chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := make(chan struct{})
	g.held, g.release = make(chan struct{}), r
	return g.held, sync.OnceFunc(func() { close(r) })
}

// queued holds the server connection's run loop, replays n copies of d
// and reports how many of them the connection's receive queue took, and
// how many datagrams of the client's own (a probe, an acknowledgement)
// arrived while the loop was held, each of which may have taken a place.
func queued(t *testing.T, rc *replayConn, g *gate, d datagram, n int, held chan struct{}, release func()) (copies, others int) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the connection never processed a packet")
	}
	dropped, reals := g.dropped.Load(), rc.reals.Load()
	rc.replay(t, d, n)
	others = int(rc.reals.Load() - reals)
	copies = n - int(g.dropped.Load()-dropped)
	release()
	return copies, others
}

// TestReceiveQueue: while the handshake is in progress a connection's
// receive queue holds quic-go's 256 packets; once it completed, the
// fork's 4096. The server's run loop is held while copies of a client
// datagram arrive; those the queue cannot hold are dropped
// ("dos_prevention"). A datagram of the client's own that arrives while
// the loop is held takes a place too (counted), as may one queued just
// before the loop was held (not counted: the slack).
func TestReceiveQueue(t *testing.T) {
	const slack = 8
	ca := newCA(t, "td")
	server, _ := tlsConfigs(ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	_, client := tlsConfigs(ca.leaf(t, "/ns/west/sa/ewgw"), ca)
	server.NextProtos, client.NextProtos = []string{ALPN}, []string{ALPN}
	g := &gate{}
	rc := newReplayConn(t)
	str := &quic.Transport{Conn: rc}
	defer str.Close()
	ln, err := str.Listen(server, &quic.Config{
		Tracer: func(ctx context.Context, isClient bool, _ quic.ConnectionID) qlogwriter.Trace { return g },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctr := &quic.Transport{Conn: bindUDP(t, "127.0.0.1:0")}
	defer ctr.Close()

	held, release := g.arm()
	defer release()
	type dialed struct {
		qc  *quic.Conn
		err error
	}
	dial := make(chan dialed, 1)
	go func() {
		qc, err := ctr.Dial(t.Context(), rc.LocalAddr(), client, &quic.Config{HandshakeIdleTimeout: waitTimeout})
		dial <- dialed{qc, err}
	}()
	// The transport hands the client's first Initial to the new connection
	// and reads on; held is closed once the connection processes it.
	<-rc.entered
	initial, _ := rc.kept()
	for initial.b == nil {
		<-rc.entered
		initial, _ = rc.kept()
	}
	n, others := queued(t, rc, g, initial, handshakeQueue+100, held, release)
	t.Logf("during the handshake: %d of %d copies queued, %d datagrams of the client's own arrived meanwhile", n, handshakeQueue+100, others)
	if n > handshakeQueue || n < handshakeQueue-others-slack {
		t.Errorf("during the handshake the queue took %d copies (%d other datagrams arrived), want %d", n, others, handshakeQueue)
	}
	d := <-dial
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.qc.CloseWithError(0, "")
	sc, err := ln.Accept(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.CloseWithError(0, "")

	// A stream byte: the server has received a short-header datagram.
	cs, err := d.qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	ss, err := sc.AcceptStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_, short := rc.kept()
	held, release = g.arm()
	defer release()
	rc.replay(t, short, 1) // processed as a duplicate, if nothing else comes first
	n, others = queued(t, rc, g, short, connQueue+100, held, release)
	t.Logf("after the handshake: %d of %d copies queued, %d datagrams of the client's own arrived meanwhile", n, connQueue+100, others)
	if n > connQueue || n < connQueue-others-slack {
		t.Errorf("after the handshake the queue took %d copies (%d other datagrams arrived), want %d", n, others, connQueue)
	}
}
