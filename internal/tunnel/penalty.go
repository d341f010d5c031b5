package tunnel

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Penalties. Closing a connection whose peer broke a rule is not enough:
// a hostile but allowed peer reconnects at once and breaks it again, and
// every cycle costs this side the decoding of whatever it sent (a
// catalogue flood past the budget: megabytes per connection). So a peer
// whose connection was closed for a violation (violated) is penalised:
// until the penalty ends its new connections are closed with CodePenalty
// right after the handshake, before its hello is read (serveInbound),
// Initials from the addresses it connected from are refused before any
// cryptography (admission.go, sources), and this side does not dial it
// either (dialLoop), since the connection would carry the same catalogue. The penalty lasts penaltyFirst, doubles
// with each violation after one ended, up to penaltyMax, and starts again
// from penaltyFirst once the peer kept to the rules for penaltyForget
// after its last penalty ended.
//
// The penalty belongs to the configured peer, so it covers every
// identity that maps to it (a peer matched by trust domain). A violation
// on a connection admitted before the penalty began does not lengthen it:
// a peer's connections often break the same rule together.
//
// When a penalty ends the peer is on probation: it may have one
// connection at a time (inbound or dialled, the trial), and a second one
// meanwhile is refused with CodePenalty (probation) right after the
// handshake. Probation ends once the trial has kept to the rules for
// probationClean after its hello; a trial that breaks a rule again (a
// catalogue flood comes in the deltas after an honest-looking hello)
// lengthens the penalty as any violation does. Without it, a peer with
// many connections sends its catalogue on all of them each time a penalty
// ends, and this side decodes every copy.
//
// An honest peer whose catalogue is over this side's budget is penalised
// too: that is a violation all the same, logged and shown as its
// LastError, and the penalty only spaces out its retries.
const (
	penaltyFirst  = time.Second
	penaltyMax    = 5 * time.Minute
	penaltyForget = 10 * time.Minute
)

// penalty is a peer's record of violations. peer.mu guards it.
type penalty struct {
	until     time.Time     // new connections are refused before this
	length    time.Duration // the current or last penalty's length; 0: none yet
	cause     string        // the reason of the violation that began it
	probation bool          // since a violation, no hello has passed
	trials    int           // connections on trial: saying their hello while on probation
}

// impose records a violation of reason at now. It reports when the
// penalty ends and whether the violation began a new one.
func (pn *penalty) impose(now time.Time, reason string) (time.Time, bool) {
	switch {
	case now.Before(pn.until):
		return pn.until, false
	case pn.length == 0 || now.Sub(pn.until) >= penaltyForget:
		pn.length = penaltyFirst
	default:
		pn.length = min(2*pn.length, penaltyMax)
	}
	pn.until, pn.cause, pn.probation = now.Add(pn.length), reason, true
	return pn.until, true
}

// probationClean is how long the connection on trial must keep to the
// rules after its hello for probation to end: a flood follows its hello
// within a round trip.
const probationClean = time.Second

// trial takes the place of the connection on trial, for a connection of
// the peer about to say its hello: it reports false while another holds
// it. Without probation every connection may, and place is nil; otherwise
// the caller holds place until it ends it: when probation ends, or the
// connection does.
func (p *peer) trial() (ok bool, place *trialPlace) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.pen.probation:
		return true, nil
	case p.pen.trials > 0:
		return false, nil
	}
	p.pen.trials++
	return true, &trialPlace{p: p}
}

// trialPlace is a connection's place on trial.
type trialPlace struct {
	p    *peer
	once sync.Once
}

// end gives the place back; ending it again, or a nil place, does nothing.
func (tp *trialPlace) end() {
	if tp == nil {
		return
	}
	tp.once.Do(func() {
		tp.p.mu.Lock()
		tp.p.pen.trials--
		tp.p.mu.Unlock()
	})
}

// pass ends probation: the connection on trial kept to the rules.
func (p *peer) pass() {
	p.mu.Lock()
	p.pen.probation = false
	p.mu.Unlock()
}

// penalise records a violation by the peer at now; see penalty.impose.
func (p *peer) penalise(now time.Time, reason string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pen.impose(now, reason)
}

// penalty returns a copy of the peer's penalty record.
func (p *peer) penalty() penalty {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pen
}

// violated closes c because its peer broke a rule (e), and penalises the
// peer.
func (t *Tunnel) violated(c *conn, e *PolicyError) {
	t.penalise(c, e)
	t.closeFor(c, e)
}

// penalise penalises c's peer for e, and notes the penalty's end in e.
func (t *Tunnel) penalise(c *conn, e *PolicyError) {
	p := c.peer
	now := t.cfg.now()
	until, began := p.penalise(now, e.Reason)
	t.srcs.ban(c.sess.RemoteAddr(), p, until, now)
	if began {
		t.m.penalties.WithLabelValues(p.cfg.Name).Inc()
		t.log.Info("peer penalised", "peer", p.cfg.Name, "peer_id", c.id, "reason", e.Reason,
			"until", until.UTC().Format(time.RFC3339))
	}
	e.Until = until
}

// refusePenalised closes sess, a new connection from p, if p is penalised,
// and reports whether it did; then sess's address is refused at the QUIC
// Initial until the penalty ends. Otherwise it records sess's address as
// one a peer in good standing uses (admission.go, sources). While p is on
// probation it admits sess as the connection on trial (place), or closes
// it if another is. It runs before anything is read from sess.
func (t *Tunnel) refusePenalised(sess session, p *peer, id string) (refused bool, place *trialPlace) {
	pn, now := p.penalty(), t.cfg.now()
	if !now.Before(pn.until) {
		ok, place := p.trial()
		if ok {
			t.srcs.admitted(sess.Context(), sess.RemoteAddr(), p, t.cfg.now)
			return false, place
		}
		e := refusal(refuseProbation, CodePenalty, "peer %s (%s) is on probation after a penalty for %s: one connection at a time until one keeps to the rules for %v after its hello",
			p.cfg.Name, id, pn.cause, probationClean)
		t.log.Debug("peer conn refused", "peer", p.cfg.Name, "peer_id", id, "reason", e.Reason,
			"remote_addr", sess.RemoteAddr().String())
		t.refuseSession(sess, e)
		return true, nil
	}
	t.srcs.ban(sess.RemoteAddr(), p, pn.until, now)
	e := refusal(refusePenalised, CodePenalty, "peer %s (%s) is penalised for %s (%s) until %s",
		p.cfg.Name, id, pn.length, pn.cause, pn.until.UTC().Format(time.RFC3339))
	p.setErr(e)
	t.log.Info("peer conn refused", "peer", p.cfg.Name, "peer_id", id, "reason", e.Reason,
		"remote_addr", sess.RemoteAddr().String(), "until", pn.until.UTC().Format(time.RFC3339))
	t.refuseSession(sess, e)
	return true, nil
}

// sitOut waits while p is penalised, or on probation with another
// connection on trial: this side does not dial a peer whose connections
// it refuses. It reports false when ctx ended first, and otherwise the
// trial place the caller holds, if any (see trial).
func (t *Tunnel) sitOut(ctx context.Context, p *peer) (ok bool, place *trialPlace) {
	for {
		wait := p.penalty().until.Sub(t.cfg.now())
		if wait <= 0 {
			if ok, place := p.trial(); ok {
				return true, place
			}
			wait = trialPoll
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false, nil
		case <-timer.C:
		}
	}
}

// trialPoll is how often a dial slot looks again while another connection
// of the peer is on trial.
const trialPoll = 100 * time.Millisecond

// penaltyNote is what PolicyError.Error adds for a violation that left
// its peer penalised.
func penaltyNote(until time.Time) string {
	if until.IsZero() {
		return ""
	}
	return fmt.Sprintf("; penalised until %s", until.UTC().Format(time.RFC3339))
}
