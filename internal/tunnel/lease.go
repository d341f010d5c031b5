package tunnel

import (
	"errors"
	"os"
	"time"

	"github.com/quic-go/quic-go"
)

// A lease bounds how long a peer routes on a catalogue after the path to
// its announcer went silent. QUIC's idle timeout would notice too, but it
// is sized for NAT keepalives (tens of seconds), and a keepalive PING
// proves the transport lives, not that the gateway behind it still runs
// its control loop. See the control stream comment in control.go.

// leaseReader reads the control stream with a deadline a lease away from
// each read, so the lease measures the peer's silence, not how long a
// large message takes to arrive. Bytes arriving on the connection's data
// streams count as hearing from the peer too: a peer busy sending is not
// silent, and under load (a thousand streams on two starved cores) its
// refreshes can queue behind the data for longer than a lease; closing
// the connection then would reset every stream on it.
type leaseReader struct {
	c     *conn
	lease time.Duration
}

func (r leaseReader) Read(b []byte) (int, error) {
	deadline := time.Now().Add(r.lease)
	for {
		r.c.ctl.SetReadDeadline(deadline)
		n, err := r.c.ctl.Read(b)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// The lease runs from whichever was heard last.
		deadline = time.Unix(0, r.c.heard.Load()).Add(r.lease)
		if !time.Now().Before(deadline) {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// hearGranularity bounds how stale conn.heard may be. Every read of every
// stream on a connection reports here; storing only when the value moved by
// this much keeps the streams from contending for one cache line.
const hearGranularity = 10 * time.Millisecond

// hear records that a data stream delivered bytes from the peer.
func (c *conn) hear() {
	now := time.Now().UnixNano()
	if now-c.heard.Load() >= int64(hearGranularity) {
		c.heard.Store(now)
	}
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
		case <-c.qc.Context().Done():
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
		"remote_addr", c.qc.RemoteAddr().String(), "lease", c.peerLease)
	c.qc.CloseWithError(quic.ApplicationErrorCode(CodeLeaseExpired), "lease expired")
}
