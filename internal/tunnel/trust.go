package tunnel

import (
	"crypto/x509"
	"time"
)

// Trust is checked in the handshake, and a peering connection lives for
// days. Two things keep it honest while connected: a connection is
// replaced before the peer's certificate expires (watchExpiry), so a new
// handshake checks the peer's new one, and Recheck re-verifies every live
// connection when the trust bundles or the allow policy change.

// Recheck re-verifies the peer of every live connection: verify gets the
// peer's SPIFFE ID and the chain it presented, leaf first, and says whether
// it still passes (the caller's TLS VerifyConnection, with the current
// bundles and policy, is the intended check). Connections that fail are
// closed with CodeRevoked, so their streams end with that code on both
// sides instead of hanging, and the failure is the peer's LastError. It
// returns how many it closed.
func (t *Tunnel) Recheck(verify func(id string, chain []*x509.Certificate) error) int {
	t.mu.Lock()
	live := make(map[session]*conn, len(t.conns))
	for sess, c := range t.conns {
		live[sess] = c
	}
	t.mu.Unlock()
	closed := 0
	for sess, c := range live {
		chain := sess.TLS().PeerCertificates
		id, _ := peerID(sess.TLS())
		err := verify(id, chain)
		if err == nil {
			continue
		}
		closed++
		e := refusal(refuseRevoked, CodeRevoked, "peer %s no longer passes the trust check: %w", id, err)
		if c == nil { // the hello is still running; it will fail
			t.refuseSession(sess, e)
			continue
		}
		t.closeFor(c, e)
	}
	return closed
}

// watchExpiry retires c ahead of its peer's certificate expiry and closes
// it at the expiry, until the connection closes. Retiring (retire) lets
// the streams on it finish while a new connection takes new ones; the
// retirement times of a peer's connections are spread by jitter so they
// are replaced one by one, not all at once.
func (t *Tunnel) watchExpiry(c *conn) {
	notAfter, ok := chainNotAfter(c.sess.TLS().PeerCertificates)
	if !ok {
		return
	}
	now := time.Now()
	retire := time.NewTimer(retireAt(now, notAfter, t.cfg.jitter()).Sub(now))
	defer retire.Stop()
	expire := time.NewTimer(notAfter.Sub(now))
	defer expire.Stop()
	for {
		select {
		case <-c.sess.Context().Done():
			return
		case <-retire.C:
			t.retire(c, notAfter)
		case <-expire.C:
			t.closeFor(c, refusal(refuseCertExpiry, CodeCertExpired, "peer certificate expired at %s",
				notAfter.UTC().Format(time.RFC3339)))
			return
		}
	}
}

// chainNotAfter is the earliest expiry in a chain: when it stops verifying.
func chainNotAfter(chain []*x509.Certificate) (time.Time, bool) {
	var first time.Time
	for i, c := range chain {
		if i == 0 || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first, len(chain) > 0
}

// retireAt is when a connection whose peer certificate expires at notAfter,
// established at now, is retired: between a quarter and a half of its
// remaining life before notAfter, by r in [0, 1), so the streams on it
// have at least a quarter of that life to finish. An SVID is rotated at
// half its life at the latest (SPIRE's default, and the ca source's), so
// the replacement's handshake gets the peer's fresh one; should the peer
// rotate later, the replacement presents the same one and is retired in
// turn within half of what is left, never in a tight loop.
func retireAt(now, notAfter time.Time, r float64) time.Time {
	left := notAfter.Sub(now)
	return notAfter.Add(-left/4 - time.Duration(r*float64(left/4)))
}

// retire takes new streams off c both ways (goAway): this side stops
// picking c, the peer stops opening streams on it, a dialled connection's
// slot dials its replacement, and c closes once both sides' streams on it
// are done (closeIfDrained).
func (t *Tunnel) retire(c *conn, notAfter time.Time) {
	t.log.Info("peer conn retiring before certificate expiry", "peer", c.peer.cfg.Name,
		"direction", c.dir, "not_after", notAfter)
	t.goAway(c)
}
