// Package lb chooses a local endpoint for a connection: least active
// connections first, skipping endpoints ejected after consecutive dial
// failures (outlier detection in the style of Envoy's consecutive_5xx, but on
// connect errors).
package lb

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Config tunes a Balancer. Zero fields take the defaults noted.
type Config struct {
	// EjectAfter is how many consecutive dial failures eject an endpoint.
	// Default 3.
	EjectAfter int
	// EjectFor is how long the first ejection lasts. Each further ejection of
	// the same endpoint doubles it, up to MaxEjectFor. Default 10s.
	EjectFor time.Duration
	// MaxEjectFor caps the ejection time. Default 5m.
	MaxEjectFor time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultEjectAfter  = 3
	DefaultEjectFor    = 10 * time.Second
	DefaultMaxEjectFor = 5 * time.Minute
)

func (c *Config) applyDefaults() {
	if c.EjectAfter <= 0 {
		c.EjectAfter = DefaultEjectAfter
	}
	if c.EjectFor <= 0 {
		c.EjectFor = DefaultEjectFor
	}
	if c.MaxEjectFor <= 0 {
		c.MaxEjectFor = DefaultMaxEjectFor
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Balancer tracks per-endpoint state across all services. It is safe for
// concurrent use.
type Balancer struct {
	cfg Config

	mu    sync.Mutex
	state map[netip.AddrPort]*endpoint
}

type endpoint struct {
	active       int
	failures     int       // consecutive dial failures
	ejections    int       // consecutive ejections, for the backoff
	ejectedUntil time.Time // zero when not ejected
}

// New returns a Balancer.
func New(cfg Config) *Balancer {
	cfg.applyDefaults()
	return &Balancer{cfg: cfg, state: map[netip.AddrPort]*endpoint{}}
}

// Pick returns the endpoint among eps with the fewest active connections that
// is not ejected and not in tried, and counts a connection on it; the caller
// must call Done exactly once. Ties break at random so equal endpoints share
// load. ok is false when no endpoint is eligible.
func (b *Balancer) Pick(eps []netip.AddrPort, tried []netip.AddrPort) (ep netip.AddrPort, ok bool) {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	best, ties := -1, 0
	for _, e := range eps {
		if contains(tried, e) {
			continue
		}
		st := b.get(e)
		if now.Before(st.ejectedUntil) {
			continue
		}
		switch {
		case best < 0 || st.active < best:
			best, ties, ep = st.active, 1, e
		case st.active == best:
			// Reservoir sampling keeps each tie equally likely.
			ties++
			if rand.IntN(ties) == 0 {
				ep = e
			}
		}
	}
	if best < 0 {
		return netip.AddrPort{}, false
	}
	b.state[ep].active++
	return ep, true
}

// Done ends a connection counted by Pick. dialErr is the result of dialing
// the endpoint: nil resets its failure count, an error counts towards
// ejection. It reports whether this call ejected the endpoint.
func (b *Balancer) Done(ep netip.AddrPort, dialErr error) (ejected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.get(ep)
	st.active--
	if dialErr == nil {
		st.failures, st.ejections = 0, 0
		b.forgetIfIdle(ep, st)
		return false
	}
	st.failures++
	if st.failures < b.cfg.EjectAfter {
		return false
	}
	st.failures = 0
	d := b.cfg.EjectFor << min(st.ejections, 30)
	if d <= 0 || d > b.cfg.MaxEjectFor {
		d = b.cfg.MaxEjectFor
	}
	st.ejections++
	st.ejectedUntil = b.cfg.Now().Add(d)
	return true
}

func (b *Balancer) get(ep netip.AddrPort) *endpoint {
	st, ok := b.state[ep]
	if !ok {
		st = &endpoint{}
		b.state[ep] = st
	}
	return st
}

// forgetIfIdle drops state that carries no information, so endpoints that
// disappear from discovery do not accumulate.
func (b *Balancer) forgetIfIdle(ep netip.AddrPort, st *endpoint) {
	if st.active == 0 && st.failures == 0 && st.ejections == 0 {
		delete(b.state, ep)
	}
}

func contains(s []netip.AddrPort, e netip.AddrPort) bool {
	for _, x := range s {
		if x == e {
			return true
		}
	}
	return false
}
