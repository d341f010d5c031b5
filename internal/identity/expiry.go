package identity

import (
	"encoding/hex"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Expiry says when each part of the gateway's identity stops working.
type Expiry struct {
	// ID is the gateway's SPIFFE ID.
	ID string
	// SVID is the current SVID's expiry (its leaf's NotAfter).
	SVID time.Time
	// SVIDIssuerKeyID is the hex key identifier of the CA that signed the
	// SVID (its AuthorityKeyId; SPIRE's authority ID): which CA a rotation
	// has reached.
	SVIDIssuerKeyID string
	// CA is when the CA the gateway issues from expires, the earliest
	// NotAfter in its chain; zero unless the CA source.
	CA time.Time
	// Bundles are the trust bundles, sorted by trust domain.
	Bundles []BundleExpiry
}

// BundleExpiry is one trust domain's bundle.
type BundleExpiry struct {
	TrustDomain string
	// NotAfter is the earliest expiry among the bundle's roots: when a
	// chain to that root stops verifying. A root kept after a rotation
	// has ended should be dropped from the bundle before it gets here.
	NotAfter time.Time
	// Roots is the number of root certificates in the bundle.
	Roots int
	// Federated is set when the bundle is one a peer of the trust domain
	// announced, which replaces the configured one (federate.go).
	Federated bool
}

// Expiry returns the identity's expiries now. A Workload API source cannot
// list its bundles; there they are those of the gateway's own trust domain
// and of the trust domains the policy last given to ServerTLSConfig or
// ClientTLSConfig names.
func (s *Source) Expiry() Expiry {
	e := Expiry{ID: s.ID(), SVID: s.notAfter()}
	if svid, err := s.svids.GetX509SVID(); err == nil {
		e.SVIDIssuerKeyID = hex.EncodeToString(svid.Certificates[0].AuthorityKeyId)
	}
	if s.files != nil && s.files.issuer != nil {
		e.CA = caNotAfter(s.files.cur.Load().ca)
	}
	for _, td := range s.bundleDomains() {
		b, err := s.bundles.GetX509BundleForTrustDomain(td)
		if err != nil {
			continue
		}
		be := BundleExpiry{TrustDomain: td.Name(), Federated: s.files != nil && s.files.fed.get(td, s.configured(td)) != nil}
		for i, c := range b.X509Authorities() {
			if i == 0 || c.NotAfter.Before(be.NotAfter) {
				be.NotAfter = c.NotAfter
			}
			be.Roots++
		}
		e.Bundles = append(e.Bundles, be)
	}
	return e
}

// bundleDomains lists the trust domains the source holds bundles for,
// sorted.
func (s *Source) bundleDomains() []spiffeid.TrustDomain {
	if l, ok := s.bundles.(interface{ trustDomains() []spiffeid.TrustDomain }); ok {
		return l.trustDomains()
	}
	var tds []spiffeid.TrustDomain
	if svid, err := s.svids.GetX509SVID(); err == nil {
		tds = append(tds, svid.ID.TrustDomain())
	}
	if a := s.auth.Load(); a != nil {
		tds = append(tds, a.trustDomains()...)
	}
	slices.SortFunc(tds, func(a, b spiffeid.TrustDomain) int { return a.Compare(b) })
	return slices.Compact(tds)
}
