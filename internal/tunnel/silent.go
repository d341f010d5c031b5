package tunnel

import (
	"errors"
	"sync"
	"time"
)

// A connection can die without a word: a NAT mapping expires, a link
// goes, a replica freezes. The lease notices within a lease (2 s by
// default); a stream opened on such a connection meanwhile would wait for
// that and fail. Instead, Open watches the connection it opened a stream
// on: a live peer acknowledges the header within about an RTT plus its
// acknowledgement delay (RFC 9000 §13.2.1), even while its local dial
// takes long, so a connection that receives no packet at all within
// answerTimeout of the open is silent. The open then moves to another of
// the peer's live connections, and pick passes over the silent one until
// a packet arrives on it again.
//
// Moving an open is safe because the opener has not seen the status yet:
// no byte from the server reached the client. The early bytes (the
// client's ClientHello) may have reached a server on the silent path; a
// ClientHello whose handshake never completes carries no application
// data.

// errNoAnswer reports an open whose connection received nothing within
// answerTimeout while the peer had another connection.
var errNoAnswer = errors.New("no answer on the connection")

// maxAckDelay is the most a QUIC peer delays an acknowledgement by
// default (RFC 9000 §18.2, max_ack_delay).
const maxAckDelay = 25 * time.Millisecond

// minAnswerTimeout is the floor of answerTimeout: on a loopback or LAN
// path, scheduling delays of a busy gateway dwarf the RTT, and a live
// connection taken for silent costs a retry.
const minAnswerTimeout = 200 * time.Millisecond

// answerTimeout is how long a live peer may take to send anything after a
// stream opens: twice a generous RTT (smoothed plus four mean deviations,
// as RFC 9002's probe timeout) plus the acknowledgement delay.
func (c *conn) answerTimeout() time.Duration {
	rtt, dev := c.sess.RTT()
	return max(2*(rtt+4*dev)+maxAckDelay, minAnswerTimeout)
}

// packetsReceived is the connection's count of received packets.
func (c *conn) packetsReceived() uint64 { return c.sess.Received() }

// markSilent marks c silent until something arrives on it.
func (c *conn) markSilent() { c.silentAt.Store(c.packetsReceived() + 1) }

// silent reports whether an open, or the lease reader, found c silent and
// nothing arrived on it since. silentAt holds the received-packet count, plus one, when the
// open gave up; 0 if none did.
func (c *conn) silent() bool {
	at := c.silentAt.Load()
	if at == 0 {
		return false
	}
	if c.packetsReceived()+1 != at {
		c.silentAt.CompareAndSwap(at, 0)
		return false
	}
	return true
}

// watchdog watches a stream open for the silence of its connection.
type watchdog struct {
	c       *conn
	packets uint64 // received before the open
	every   time.Duration
	give    func() // interrupts the open

	mu     sync.Mutex
	timer  *time.Timer
	done   bool
	gaveUp bool
}

// watch starts watching the open of a stream on c; give interrupts it.
// Call it before the header goes out.
func watch(c *conn, give func()) *watchdog {
	w := &watchdog{c: c, packets: c.packetsReceived(), every: c.answerTimeout(), give: give}
	w.mu.Lock()
	w.timer = time.AfterFunc(w.every, w.check)
	w.mu.Unlock()
	return w
}

// check runs every answerTimeout until something arrives. A connection
// with no packet since the open is marked silent; the open is given up
// only if the peer has another connection to move it to, since with none
// waiting costs nothing.
func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.c.packetsReceived() != w.packets {
		return
	}
	w.c.silentAt.Store(w.packets + 1) // as markSilent, as of the open
	if !w.c.peer.hasOther(w.c) {
		w.timer.Reset(w.every)
		return
	}
	w.gaveUp = true
	w.give()
}

// stop ends the watch and reports whether the open was given up.
func (w *watchdog) stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.timer.Stop()
	return w.gaveUp
}
