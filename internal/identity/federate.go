package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Federation: trust bundles that peers announce for their own trust
// domains (the tunnel carries them on the authenticated control stream).
//
// The files name the bundle each trust domain starts from. A peer of
// trust domain td, whose chain verifies against the bundle trusted for td
// now, may replace that bundle with the one it announces: each bundle is
// vouched for by the one before it, back to the configured one, which is
// the chain of trust of SPIFFE federation's https_spiffe profile (SPIFFE
// Trust Domain and Bundle §5.2.2). An announced bundle replaces the
// previous one whole (§4.3); a peer rotating its root keeps the old root
// in it for the overlap. Federated bundles live in memory: a restart
// starts again from the files. A change to a trust domain's file
// supersedes what peers announced for it, so an operator can always take
// a trust domain back by editing its bundle; the next announcement that
// verifies against the edited bundle takes over again. The gateway's own
// trust domain is never federated: only its own files set it.

// ErrNoFederation reports federation asked of the Workload API source,
// whose bundles, federated ones included, are SPIRE's.
var ErrNoFederation = errors.New("the workload api source takes federated bundles from spire")

// ErrOwnDomain reports a bundle for the gateway's own trust domain, which
// only its own files set.
var ErrOwnDomain = errors.New("the gateway's own trust domain is not federated")

// federated is a bundle a peer announced, and the configured bundle it was
// taken over, which it replaces only while that stays the configured one.
type federated struct {
	bundle *x509bundle.Bundle
	base   *x509bundle.Bundle
}

// federation holds the federated bundles, by trust domain; reads are lock
// free, writes copy the map under mu.
type federation struct {
	mu sync.Mutex
	m  atomic.Pointer[map[spiffeid.TrustDomain]federated]
}

// get returns td's federated bundle if it was taken over conf, else nil.
func (f *federation) get(td spiffeid.TrustDomain, conf *x509bundle.Bundle) *x509bundle.Bundle {
	m := f.m.Load()
	if m == nil {
		return nil
	}
	e, ok := (*m)[td]
	if !ok || !e.base.Equal(conf) {
		return nil
	}
	return e.bundle
}

// set installs b for td over conf.
func (f *federation) set(td spiffeid.TrustDomain, b, conf *x509bundle.Bundle) {
	next := map[spiffeid.TrustDomain]federated{}
	if m := f.m.Load(); m != nil {
		next = maps.Clone(*m)
	}
	next[td] = federated{bundle: b, base: conf}
	f.m.Store(&next)
}

// Federates reports whether the source takes bundles from peers: the files
// and ca sources do.
func (s *Source) Federates() bool { return s.files != nil }

// Federate makes roots (DER) trust domain td's bundle, as announced by the
// peer whose certificate chain, leaf first, is chain. The peer's SPIFFE ID
// must be in td, its chain must verify against td's bundle trusted now,
// and every root must be a CA certificate. It reports whether td's bundle
// changed. A bundle for the gateway's own trust domain is ErrOwnDomain.
func (s *Source) Federate(td string, roots [][]byte, chain []*x509.Certificate) (changed bool, err error) {
	if s.files == nil {
		return false, ErrNoFederation
	}
	domain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return false, fmt.Errorf("trust domain %q: %w", td, err)
	}
	if svid, err := s.svids.GetX509SVID(); err == nil && svid.ID.TrustDomain() == domain {
		return false, ErrOwnDomain
	}
	next, err := parseRoots(domain, roots)
	if err != nil {
		return false, err
	}
	from, err := s.vouched(domain, chain)
	if err != nil {
		return false, err
	}
	f := &s.files.fed
	f.mu.Lock()
	defer f.mu.Unlock()
	conf, err := s.files.cur.Load().bundles.GetX509BundleForTrustDomain(domain)
	if err != nil {
		return false, fmt.Errorf("no configured bundle for %s: federation starts from one", domain)
	}
	cur := f.get(domain, conf)
	if cur == nil {
		cur = conf
	}
	if cur.Equal(next) {
		return false, nil
	}
	f.set(domain, next, conf)
	s.m.federated.Inc()
	s.log.Info("trust bundle federated", "trust_domain", domain.Name(), "roots", len(roots), "from", from.String())
	return true, nil
}

// vouched checks that chain is a peer's of trust domain td whose chain
// verifies against td's bundle trusted now, and returns the peer's ID.
func (s *Source) vouched(td spiffeid.TrustDomain, chain []*x509.Certificate) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, errors.New("no announcer certificate")
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("announcer: %w", err)
	}
	if id.TrustDomain() != td {
		return id, fmt.Errorf("announcer %s is not of trust domain %s", id, td)
	}
	if _, _, err := x509svid.Verify(chain, s.bundles, x509svid.WithTime(s.cfg.Now())); err != nil {
		return id, fmt.Errorf("announcer %s no longer verifies against the trusted bundle: %w", id, err)
	}
	return id, nil
}

// parseRoots parses DER roots into td's bundle; each must be a CA.
func parseRoots(td spiffeid.TrustDomain, roots [][]byte) (*x509bundle.Bundle, error) {
	if len(roots) == 0 {
		return nil, errors.New("no roots")
	}
	certs := make([]*x509.Certificate, 0, len(roots))
	for i, r := range roots {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", i, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("root %d (%q) is not a CA certificate", i, c.Subject)
		}
		certs = append(certs, c)
	}
	return x509bundle.FromX509Authorities(td, certs), nil
}

// OwnBundle returns the gateway's own trust domain and its configured
// roots (DER), to announce to peers. It fails when the gateway's own SVID
// does not verify against them: peers would then refuse it, so such a
// bundle is not announced. The Workload API source has none
// (ErrNoFederation).
func (s *Source) OwnBundle() (td string, roots [][]byte, err error) {
	if s.files == nil {
		return "", nil, ErrNoFederation
	}
	svid, err := s.svids.GetX509SVID()
	if err != nil {
		return "", nil, err
	}
	own := svid.ID.TrustDomain()
	b, err := s.files.cur.Load().bundles.GetX509BundleForTrustDomain(own)
	if err != nil {
		return "", nil, fmt.Errorf("no bundle configured for the gateway's own trust domain %s", own)
	}
	set := x509bundle.NewSet(b)
	if _, _, err := x509svid.Verify(svid.Certificates, set, x509svid.WithTime(s.cfg.Now())); err != nil {
		return "", nil, fmt.Errorf("own svid %s does not verify against the own bundle: %w", svid.ID, err)
	}
	for _, c := range b.X509Authorities() {
		roots = append(roots, c.Raw)
	}
	return own.Name(), roots, nil
}

// configured is td's bundle as the files give it; nil if none.
func (s *Source) configured(td spiffeid.TrustDomain) *x509bundle.Bundle {
	b, _ := s.files.cur.Load().bundles.GetX509BundleForTrustDomain(td)
	return b
}
