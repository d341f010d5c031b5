package gateway

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ewgw/ewgw/internal/identity"
	"github.com/ewgw/ewgw/internal/tunnel"
)

// announceEvery is how often the gateway checks its own trust domain's
// bundle for a change to announce: the identity files' poll interval.
const announceEvery = 2 * time.Second

// federation wires trust bundle federation (peering.federate) between
// the identity source, which holds the bundles, and the tunnel, which
// carries them on the peering connections' control streams.
type federation struct {
	ident *identity.Source
	log   *slog.Logger
	// changed is signalled when a peer's bundle changed one in use, so
	// that live connections are re-verified at once.
	changed chan struct{}
	// lastErr is the last reason the own bundle could not be announced,
	// logged once per change; only the peering loop touches it.
	lastErr string
}

func newFederation(ident *identity.Source, log *slog.Logger) *federation {
	return &federation{ident: ident, log: log, changed: make(chan struct{}, 1)}
}

// receive is the tunnel's OnBundle: it hands a peer's bundle to the
// identity source. A bundle for this gateway's own trust domain is
// ignored; every other failure refuses it, and the tunnel closes the
// connection and counts why.
func (f *federation) receive(from tunnel.BundleFrom, b tunnel.Bundle) error {
	changed, err := f.ident.Federate(b.TrustDomain, b.Roots, from.Chain)
	switch {
	case errors.Is(err, identity.ErrOwnDomain):
		f.log.Debug("peer bundle ignored", "peer", from.Peer, "peer_id", from.ID, "reason", "own trust domain")
		return nil
	case err != nil:
		return err
	}
	if changed {
		select {
		case f.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// announce gives the tunnel this gateway's own bundle; the tunnel sends it
// only when it changed.
func (f *federation) announce(tun *tunnel.Tunnel) {
	td, roots, err := f.ident.OwnBundle()
	if err == nil {
		err = tun.SetBundle(tunnel.Bundle{TrustDomain: td, Roots: roots})
	}
	if msg := errString(err); msg != f.lastErr {
		f.lastErr = msg
		if err != nil {
			f.log.Warn("own trust bundle not announced to peers", "err", err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
