package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// The CA source: the gateway as its own issuer.
//
// The cluster's intermediate CA (cert-chain.pem and ca-key.pem, as ewgw
// certs writes them into the Secret ewgw-ca, Istio's plug-in CA layout) is
// read like any other file and polled for changes; the gateway's SVID is
// never a file. It is issued in memory with a fresh ECDSA P-256 key, valid
// for TTL, and issued again at half its life, as SPIRE's agent renews
// (SPIRE's default is also half), so that a peer always sees at least half
// a lifetime left. A new CA in the files is taken at once and a new SVID
// issued from it, which is how an intermediate or root rotation reaches
// the gateway. Renewal changes what the next handshake presents; live
// connections keep theirs, and the tunnel replaces them before the
// certificate they were made with expires.

// CAWarnBefore is how long before its CA expires the gateway starts warning,
// in the log at start and on each CA change.
const CAWarnBefore = 30 * 24 * time.Hour

// minRetry and maxRetry bound the wait before issuing again after a failure.
const (
	minRetry = time.Second
	maxRetry = time.Minute
)

// CAConfig configures the CA source. Zero fields take the defaults given.
type CAConfig struct {
	// CertChain holds the CA certificate first, then its issuers; a root at
	// the end is allowed and is not sent to peers (Istio's cert-chain.pem).
	CertChain string
	// Key holds the CA's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
	Key string
	// Bundles maps each trusted trust domain to a PEM file of its roots, as
	// in FileConfig; at least one.
	Bundles map[string]string
	// ID is the SPIFFE ID to issue. Default
	// spiffe://<trust domain>/ns/<Namespace>/sa/<ServiceAccount>, the trust
	// domain being the one the CA names (its URI SAN spiffe://<td>, or its
	// URI name constraint).
	ID string
	// Namespace and ServiceAccount make the default ID. Default "ewgw" both.
	Namespace, ServiceAccount string
	// TTL is the issued SVID's lifetime, capped at the CA's expiry; it is
	// issued again at half of it. Default certgen.DefaultSVIDTTL (24h).
	TTL time.Duration
}

func (c CAConfig) withDefaults() CAConfig {
	if c.TTL <= 0 {
		c.TTL = certgen.DefaultSVIDTTL
	}
	if c.Namespace == "" {
		c.Namespace = "ewgw"
	}
	if c.ServiceAccount == "" {
		c.ServiceAccount = "ewgw"
	}
	return c
}

// issuer issues the gateway's SVIDs from the CA in the files.
type issuer struct {
	cfg CAConfig
	now func() time.Time
}

// load parses the CA files and returns the material to install: prev's
// SVID if the CA is the same as prev's, else a new one from the new CA.
func (is *issuer) load(chainPEM, keyPEM []byte, prev *material) (*material, error) {
	ca, err := certgen.ParseCA(chainPEM, keyPEM, is.now)
	if err != nil {
		return nil, fmt.Errorf("ca %s, key %s: %w", is.cfg.CertChain, is.cfg.Key, err)
	}
	if prev != nil && prev.ca != nil && prev.ca.Cert.Equal(ca.Cert) &&
		slices.EqualFunc(prev.ca.Parents, ca.Parents, (*x509.Certificate).Equal) {
		return &material{svid: prev.svid, ca: prev.ca, renewAt: prev.renewAt}, nil
	}
	m := &material{ca: ca}
	if err := is.issue(m); err != nil {
		return nil, err
	}
	return m, nil
}

// issue sets m.svid to a new SVID from m.ca, and m.renewAt to its
// half-life.
func (is *issuer) issue(m *material) error {
	id, err := is.id(m.ca)
	if err != nil {
		return err
	}
	now := is.now()
	if left := caNotAfter(m.ca).Sub(now); left <= 0 {
		return fmt.Errorf("ca %q expired at %s", m.ca.Cert.Subject, caNotAfter(m.ca).UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate svid key: %w", err)
	}
	leaf, err := m.ca.IssueLeaf(id.String(), is.cfg.TTL, key.Public())
	if err != nil {
		return err
	}
	var raw []byte
	for _, c := range append([]*x509.Certificate{leaf}, m.ca.Intermediates()...) {
		raw = append(raw, c.Raw...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// ParseRaw checks the SVID's shape and the key's match, as for files.
	svid, err := x509svid.ParseRaw(raw, keyDER)
	if err != nil {
		return fmt.Errorf("issued svid: %w", err)
	}
	m.svid = svid
	m.renewAt = now.Add(leaf.NotAfter.Sub(now) / 2)
	return nil
}

// id is the SPIFFE ID to issue: the configured one, or the default in the
// CA's trust domain. Either way the CA must be allowed to issue it
// (checkIssuers' rule 1), or every peer would refuse it.
func (is *issuer) id(ca *certgen.CA) (spiffeid.ID, error) {
	raw := is.cfg.ID
	if raw == "" {
		td, err := caTrustDomain(ca.Cert)
		if err != nil {
			return spiffeid.ID{}, err
		}
		if raw, err = certgen.GatewayID(td, is.cfg.Namespace, is.cfg.ServiceAccount); err != nil {
			return spiffeid.ID{}, err
		}
	}
	id, err := spiffeid.FromString(raw)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("id %q: %w", raw, err)
	}
	for _, c := range ca.Intermediates() {
		if err := foreign(c, id.TrustDomain()); err != nil {
			return spiffeid.ID{}, fmt.Errorf("id %s: %w", id, err)
		}
	}
	return id, nil
}

// caTrustDomain is the trust domain a CA names: its URI SAN spiffe://td
// (ewgw certs and SPIRE write one), else its one permitted URI name
// constraint that is a host rather than a suffix.
func caTrustDomain(ca *x509.Certificate) (string, error) {
	for _, u := range ca.URIs {
		if u.Scheme == "spiffe" {
			return u.Host, nil
		}
	}
	for _, c := range ca.PermittedURIDomains {
		if c != "" && c[0] != '.' {
			return c, nil
		}
	}
	return "", fmt.Errorf("ca %q names no trust domain (no URI SAN spiffe://<td>, no URI name constraint): set the id to issue", ca.Subject)
}

// caNotAfter is when the CA stops issuing: the earliest expiry in its chain.
func caNotAfter(ca *certgen.CA) time.Time {
	t := ca.Cert.NotAfter
	for _, p := range ca.Parents {
		if p.NotAfter.Before(t) {
			t = p.NotAfter
		}
	}
	return t
}

// retryAfter is the wait before issuing again after a failure: a tenth of
// the TTL, within [minRetry, maxRetry].
func (is *issuer) retryAfter() time.Duration {
	return min(max(is.cfg.TTL/10, minRetry), maxRetry)
}

// renew issues a new SVID from the current CA and installs it; on failure
// it keeps the current SVID and returns when to try again.
func (s *Source) renew() (next time.Time) {
	cur := s.files.cur.Load()
	m := &material{ca: cur.ca, bundles: cur.bundles}
	if err := s.files.issuer.issue(m); err != nil {
		s.m.failures.Inc()
		wait := s.files.issuer.retryAfter()
		s.log.Error("svid renewal failed, keeping the current one", "err", err, "not_after", s.notAfter(), "retry_in", wait)
		return s.cfg.Now().Add(wait)
	}
	s.files.cur.Store(m)
	s.m.rotations.Inc()
	s.log.Info("svid issued", "spiffe_id", s.ID(), "not_after", s.notAfter(), "renew_at", m.renewAt)
	return m.renewAt
}

// warnCA logs a warning when the CA expires within CAWarnBefore.
func (s *Source) warnCA() {
	if s.files == nil || s.files.issuer == nil {
		return
	}
	ca := s.files.cur.Load().ca
	if left := caNotAfter(ca).Sub(s.cfg.Now()); left < CAWarnBefore {
		s.log.Warn("ca expires soon: renew it (ewgw certs rotate)", "ca", ca.Cert.Subject.String(),
			"not_after", caNotAfter(ca), "days_left", int(left.Hours()/24))
	}
}
