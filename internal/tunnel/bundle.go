package tunnel

import (
	"bytes"
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/cryptobyte"
)

// Trust bundle federation over the control stream.
//
// A gateway that federates announces its own trust domain's X.509 bundle
// (its roots) to each peer in a bundle message after the hellos, and again
// whenever the bundle changes. The connection the message arrives on is
// already authenticated: its peer's chain verified against the bundle the
// receiver trusts for the peer's trust domain. So a bundle is accepted
// only for the trust domain of the peer's own SPIFFE ID, and each new
// bundle is vouched for by the one before it, back to the configured one:
// the chain of trust of SPIFFE federation's https_spiffe profile (SPIFFE
// Trust Domain and Bundle §5.2.2), without a bundle endpoint of its own.
// The announced bundle replaces the previous one (SPIFFE Trust Domain and
// Bundle §4.3); an announcer rotating its root keeps the old root in it
// for the overlap.
//
// bundle body: u8-prefixed trust domain name, u64 generation,
//              u24-prefixed list of roots, each u16-prefixed DER
//
// The generation orders one gateway run's announcements: its connections
// carry them concurrently, so a receiver may read an older one after a
// newer one on another connection, and ignores it.
//
// A bundle names a trust domain of SPIFFE ID characters and holds 1 to
// MaxBundleRoots roots of MaxBundleBytes in all; a receiver closes the
// connection with CodeProtocol on a malformed bundle, CodeLimit on one over
// budget, and CodeDenied on one for another trust domain than the peer's.
// The message kind is new in control protocol 3: a gateway of a release
// that does not know it closes the connection with CodeProtocol, which is
// why announcing is off unless configured (Config.OnBundle, SetBundle).

// kindBundle carries a trust bundle.
const kindBundle msgKind = 6

// Budgets of one announced bundle. Real bundles hold one root, two during a
// rotation; a root is under 2 KiB.
const (
	// MaxBundleRoots caps the roots of one bundle.
	MaxBundleRoots = 16
	// MaxBundleBytes caps the DER of one bundle's roots together.
	MaxBundleBytes = 64 << 10
)

// Reasons a bundle was refused, labels of ewgw_tunnel_peer_refusals_total.
const (
	refuseBadBundle     = "bad_bundle"     // malformed: a trust domain name or a root is not
	refuseOverBundle    = "over_bundle"    // over MaxBundleRoots or MaxBundleBytes
	refuseBundleDomain  = "bundle_domain"  // for another trust domain than the peer's own
	refuseBundleRefused = "bundle_refused" // Config.OnBundle refused it
)

// Bundle is a trust domain's X.509 trust bundle as federation carries it.
type Bundle struct {
	// TrustDomain is the trust domain's name, without "spiffe://".
	TrustDomain string
	// Roots are the root certificates, DER.
	Roots [][]byte
	// Gen is the announcement's generation, set by SetBundle: within one
	// run of the announcer, a later bundle has a larger one.
	Gen uint64
}

// Equal reports whether b and o hold the same roots in the same order for
// the same trust domain, whatever their generations.
func (b Bundle) Equal(o Bundle) bool {
	return b.TrustDomain == o.TrustDomain && slices.EqualFunc(b.Roots, o.Roots, bytes.Equal)
}

// BundleFrom is the peer connection a bundle arrived on.
type BundleFrom struct {
	// Peer is the configured peer's name.
	Peer string
	// ID is the peer's SPIFFE ID.
	ID string
	// Chain is the peer's certificate chain, leaf first, as its handshake
	// verified it.
	Chain []*x509.Certificate
}

// bundleAnnouncement is the bundle this side announces (its Gen orders
// announcements per connection) and its encoded message.
type bundleAnnouncement struct {
	b     Bundle
	frame []byte
}

// SetBundle makes b the bundle this side announces: to every peer
// connection now, and to each new one after its hellos. A bundle equal to
// the last is not sent again. Peers whose SPIFFE ID is in b's trust domain
// get nothing: they hold that domain's bundle themselves.
func (t *Tunnel) SetBundle(b Bundle) error {
	if pe := checkBundle(b); pe != nil {
		return pe
	}
	t.mu.Lock()
	prev := t.bundle.Load()
	if prev != nil && prev.b.Equal(b) {
		t.mu.Unlock()
		return nil
	}
	b.Gen = 1
	if prev != nil {
		b.Gen = prev.b.Gen + 1
	}
	frame, err := appendMessage(nil, message{kind: kindBundle, bundle: b})
	if err != nil {
		t.mu.Unlock()
		return err
	}
	a := &bundleAnnouncement{b: b, frame: frame}
	t.bundle.Store(a)
	conns := t.readyConns()
	t.mu.Unlock()
	for _, c := range conns {
		closeOnSendErr(c, c.sendBundle(a, t.cfg.HelloTimeout))
	}
	return nil
}

// sendBundle sends a unless it, or a later one, already went out here, or
// the peer is in a's trust domain.
func (c *conn) sendBundle(a *bundleAnnouncement, timeout time.Duration) error {
	if a == nil || idTrustDomain(c.id) == a.b.TrustDomain {
		return nil
	}
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if a.b.Gen <= c.bundleSent {
		return nil
	}
	if err := c.write(a.frame, timeout); err != nil {
		return err
	}
	c.bundleSent = a.b.Gen
	return nil
}

// receiveBundle checks a bundle a peer announced and hands it to
// Config.OnBundle; without one it is ignored.
func (t *Tunnel) receiveBundle(c *conn, b Bundle) error {
	if pe := checkBundle(b); pe != nil {
		return pe
	}
	if td := idTrustDomain(c.id); b.TrustDomain != td {
		return refusal(refuseBundleDomain, CodeDenied, "bundle for trust domain %q from %s, of trust domain %q",
			trim(b.TrustDomain), c.id, td)
	}
	if t.cfg.OnBundle == nil || !c.peer.newerBundle(c.instance, b.Gen) {
		return nil // none wanted, or overtaken by a newer one on another connection
	}
	from := BundleFrom{Peer: c.peer.cfg.Name, ID: c.id, Chain: c.sess.TLS().PeerCertificates}
	if err := t.cfg.OnBundle(from, b); err != nil {
		return refusal(refuseBundleRefused, CodeDenied, "bundle for %s: %w", b.TrustDomain, err)
	}
	return nil
}

// idTrustDomain is the trust domain of a SPIFFE ID, "" if it is not one.
func idTrustDomain(id string) string {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return ""
	}
	td, _, _ := strings.Cut(rest, "/")
	return td
}

func addBundle(b *cryptobyte.Builder, bd Bundle) {
	addString8(b, bd.TrustDomain)
	b.AddUint64(bd.Gen)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, r := range bd.Roots {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r) })
		}
	})
}

// readBundle reads a bundle body's fields; checkBundle checks them.
func readBundle(s *cryptobyte.String, bd *Bundle) bool {
	var list cryptobyte.String
	if !readString8(s, &bd.TrustDomain) || !s.ReadUint64(&bd.Gen) || !s.ReadUint24LengthPrefixed(&list) {
		return false
	}
	for !list.Empty() {
		var r cryptobyte.String
		if !list.ReadUint16LengthPrefixed(&r) {
			return false
		}
		bd.Roots = append(bd.Roots, []byte(r))
	}
	return true
}

// checkBundle reports whether bd is within the budgets and well formed:
// a trust domain name of lowercase letters, digits, '.', '-' and '_'
// (SPIFFE-ID §2.1), and 1 to MaxBundleRoots non-empty roots of at most
// MaxBundleBytes. Whether the roots parse is the receiver's business.
func checkBundle(bd Bundle) *PolicyError {
	n := 0
	for _, r := range bd.Roots {
		n += len(r)
	}
	switch {
	case len(bd.Roots) > MaxBundleRoots:
		return refusal(refuseOverBundle, CodeLimit, "bundle of %d roots, at most %d", len(bd.Roots), MaxBundleRoots)
	case n > MaxBundleBytes:
		return refusal(refuseOverBundle, CodeLimit, "bundle of %d bytes, at most %d", n, MaxBundleBytes)
	case !isTrustDomain(bd.TrustDomain):
		return refusal(refuseBadBundle, CodeProtocol, "bundle trust domain %q is not a trust domain name", trim(bd.TrustDomain))
	case len(bd.Roots) == 0:
		return refusal(refuseBadBundle, CodeProtocol, "bundle for %s holds no root", bd.TrustDomain)
	case slices.ContainsFunc(bd.Roots, func(r []byte) bool { return len(r) == 0 }):
		return refusal(refuseBadBundle, CodeProtocol, "bundle for %s holds an empty root", bd.TrustDomain)
	}
	return nil
}

// isTrustDomain reports whether s is a trust domain name (SPIFFE-ID §2.1).
func isTrustDomain(s string) bool {
	_, err := spiffeid.TrustDomainFromString(s)
	return err == nil && !strings.Contains(s, "://")
}

// newerBundle reports whether gen is newer than every bundle the peer's run
// instance announced before, and records it.
func (p *peer) newerBundle(instance, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen <= p.bundleGens[instance] {
		return false
	}
	if p.bundleGens == nil {
		p.bundleGens = map[uint64]uint64{}
	}
	p.bundleGens[instance] = gen
	return true
}
