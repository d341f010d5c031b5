package identity

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Issuing CAs bound to the peer's trust domain.
//
// A chain that verifies to the bundle of the leaf's trust domain is all that
// X.509 asks for. It is not enough when one root anchors several trust
// domains, as the shared root of "ewgw certs" does: any CA below that root
// could sign an ID in any of them, so cluster-a's CA could mint
// spiffe://cluster-b/... Name constraints on the intermediates, which ewgw
// certs adds, make Go's verification refuse such a leaf; checkIssuers refuses
// it also for CAs made by other tools, going by what each CA says about its
// own trust domain. In a verified chain leaf, CA₁ … CAₙ, root (the root from
// the bundle of the leaf's trust domain td):
//
//  1. No issuing CA (CA₁ … CAₙ) may belong to another trust domain: every
//     spiffe:// URI SAN it carries must name td, and if it has permitted URI
//     name constraints, one of them must permit td as RFC 5280 §4.2.1.10
//     reads them: "td" itself, or ".suffix" for a td ending in it. Go lets
//     "td" also cover x.td; this rule does not, so a CA of td cannot sign
//     for a trust domain x.td.
//  2. If the root also anchors another trust domain that the verifier holds
//     a bundle for (a shared root), the root cannot tell the domains apart,
//     so at least one issuing CA must be bound to td itself: a URI SAN
//     spiffe://td (as SPIRE and ewgw certs write on their CAs) or a permitted
//     URI name constraint for exactly td (as ewgw certs writes).
//
// The root itself is exempt from rule 1: it is a trust anchor by
// configuration, whatever it says.
//
// What the rules accept: SPIRE chains (its CAs carry spiffe://td, upstream
// CAs in between may carry nothing); a leaf signed directly by a root, as
// csi-driver-spiffe and cert-manager CA issuers usually do; and any chain
// under a root that anchors td alone, where the bundle's binding of root to
// domain is the SPIFFE model. What they refuse: a CA that names another trust
// domain, at any depth; and under a shared root, a chain with no CA naming
// td, which is exactly a CA that could mint any domain's IDs.
func checkIssuers(chain []*x509.Certificate, td spiffeid.TrustDomain, sharedRoot bool) error {
	cas := chain[1:]
	cas = cas[:max(len(cas)-1, 0)] // drop the root
	bound := false
	for _, ca := range cas {
		if err := foreign(ca, td); err != nil {
			return err
		}
		bound = bound || boundTo(ca, td)
	}
	if sharedRoot && !bound {
		return fmt.Errorf("root %q also anchors other trust domains, and no issuing CA below it is bound to %s (a URI SAN spiffe://%[2]s or a URI name constraint for it)",
			chain[len(chain)-1].Subject, td)
	}
	return nil
}

// foreign returns an error if ca says it belongs to a trust domain other
// than td (rule 1).
func foreign(ca *x509.Certificate, td spiffeid.TrustDomain) error {
	for _, u := range ca.URIs {
		if u.Scheme == "spiffe" && !strings.EqualFold(u.Host, td.Name()) {
			return fmt.Errorf("issuing CA %q belongs to %s://%s, not to %s", ca.Subject, u.Scheme, u.Host, td)
		}
	}
	if len(ca.PermittedURIDomains) > 0 && !slices.ContainsFunc(ca.PermittedURIDomains, func(c string) bool { return permits(c, td) }) {
		return fmt.Errorf("issuing CA %q is constrained to URIs in %v, which excludes %s", ca.Subject, ca.PermittedURIDomains, td)
	}
	return nil
}

// permits reads a permitted URI domain constraint as RFC 5280 §4.2.1.10
// does: a host, or with a leading period any host below it.
func permits(constraint string, td spiffeid.TrustDomain) bool {
	c := strings.ToLower(constraint)
	if strings.HasPrefix(c, ".") {
		return len(td.Name()) > len(c) && strings.HasSuffix(td.Name(), c)
	}
	return c == td.Name()
}

// boundTo reports whether ca names td as its own trust domain (rule 2).
func boundTo(ca *x509.Certificate, td spiffeid.TrustDomain) bool {
	for _, u := range ca.URIs {
		if u.Scheme == "spiffe" && strings.EqualFold(u.Host, td.Name()) {
			return true
		}
	}
	return slices.ContainsFunc(ca.PermittedURIDomains, func(c string) bool { return strings.EqualFold(c, td.Name()) })
}

// sharedRoot reports whether root is also in the bundle of a trust domain
// other than td. The domains compared are those the source holds bundles
// for; a Workload API source cannot list its bundles, so there they are the
// gateway's own trust domain and those the policy a names.
func (s *Source) sharedRoot(root *x509.Certificate, td spiffeid.TrustDomain, a *Authorizer) bool {
	var domains []spiffeid.TrustDomain
	if l, ok := s.bundles.(interface{ trustDomains() []spiffeid.TrustDomain }); ok {
		domains = l.trustDomains()
	} else {
		domains = a.trustDomains()
		if svid, err := s.svids.GetX509SVID(); err == nil {
			domains = append(domains, svid.ID.TrustDomain())
		}
	}
	for _, other := range domains {
		if other == td {
			continue
		}
		if b, err := s.bundles.GetX509BundleForTrustDomain(other); err == nil && b.HasX509Authority(root) {
			return true
		}
	}
	return false
}
