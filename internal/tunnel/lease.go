package tunnel

import (
	"errors"
	"os"
	"time"
)

// A lease bounds how long a peer routes on a catalogue after the path to
// its announcer went silent. QUIC's idle timeout would notice too, but it
// is sized for NAT keepalives (tens of seconds). See the control stream
// comment in control.go.

// leaseTicks is how many times per lease the reader looks at a connection
// whose control stream is quiet.
const leaseTicks = 4

// silentTicks is how many quiet ticks in a row mark a connection silent
// (conn.silent) before its lease ends: half a lease in which not even the
// peer's refresh, sent every quarter lease, arrived. New streams go to the
// peer's other connections meanwhile.
const silentTicks = leaseTicks / 2

// leaseReader reads the control stream, ending the lease when the peer has
// been silent for a lease. Silence means nothing at all arrives on the
// connection: no control message and no packet (data, acknowledgements,
// flow-control updates). A peer blocked by this side's flow control, with
// its refreshes queued behind data this side has not read yet, still
// acknowledges and is not silent; closing the connection would reset every
// stream on it. Only ticks that fire on time count: a tick that fires late
// means this process was not running (starved, throttled, paused), and
// what the peer sent meanwhile may still wait unread in the socket.
type leaseReader struct {
	c     *conn
	lease time.Duration
}

func (r leaseReader) Read(b []byte) (int, error) {
	every := r.lease / leaseTicks
	s := silence{packets: r.c.sess.Received()}
	deadline := time.Now().Add(every)
	for {
		r.c.ctl.SetReadDeadline(deadline)
		n, err := r.c.ctl.Read(b)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			return n, err
		}
		now := time.Now()
		ticks := s.tick(now.Sub(deadline) > every, r.c.sess.Received())
		if ticks >= leaseTicks {
			return 0, err
		}
		if ticks == silentTicks {
			r.c.markSilent() // pick passes over it until something arrives
		}
		deadline = now.Add(every)
	}
}

// silence counts the lease ticks in a row that heard nothing.
type silence struct {
	packets uint64 // the connection's received-packet count at the last tick
	ticks   int
}

// tick records one tick: late is whether it fired more than a tick late,
// packets the connection's received-packet count now. It returns how many
// ticks in a row were silent.
func (s *silence) tick(late bool, packets uint64) int {
	if late || packets != s.packets {
		s.packets, s.ticks = packets, 0
		return 0
	}
	s.ticks++
	return s.ticks
}

// keepLease renews this side's lease on c until the connection closes,
// whenever the control stream was quiet for a quarter of the lease. A
// message sent just before a tick defers that tick's refresh, so sends are
// at most half a lease apart: the peer, which waits a whole lease, still
// tolerates a refresh delayed by loss recovery or a busy scheduler.
func (t *Tunnel) keepLease(c *conn) {
	every := t.cfg.Lease / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.sess.Context().Done():
			return
		case <-tick.C:
			closeOnSendErr(c, c.refreshLease(every, t.cfg.HelloTimeout))
		}
	}
}

// refreshLease sends a lease message unless another message went out within
// quiet: any message renews the lease.
func (c *conn) refreshLease(quiet, timeout time.Duration) error {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if time.Since(c.lastSent) < quiet {
		return nil
	}
	b, err := appendMessage(nil, message{kind: kindLease})
	if err != nil {
		return err
	}
	return c.write(b, timeout)
}

// expireLease closes c, whose peer said nothing for its lease, with
// CodeLeaseExpired. The close takes the connection's view of the catalogue
// with it, and the peer down if it was the last connection.
func (t *Tunnel) expireLease(c *conn) {
	t.m.leaseExpirations.WithLabelValues(c.peer.cfg.Name).Inc()
	t.log.Warn("peer lease expired", "peer", c.peer.cfg.Name, "direction", c.dir,
		"remote_addr", c.sess.RemoteAddr().String(), "lease", c.peerLease)
	c.sess.CloseWithError(CodeLeaseExpired, "lease expired")
}
