// Package certgen mints the X.509 material a set of gateways needs: a root
// CA, per-cluster intermediate CAs (Istio plug-in CA compatible) and gateway
// X509-SVIDs. Every key is ECDSA P-256. The certificates follow the X509-SVID
// specification (spiffe/spiffe standards/X509-SVID.md §4–5) so that
// go-spiffe, SPIRE and Istio accept them.
//
// certgen deliberately does not import go-spiffe: package identity is the
// project's only importer, and tests use certgen to feed it.
package certgen

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// backdate is subtracted from every NotBefore so that a peer whose clock runs
// slightly behind still accepts a certificate minted a moment ago.
const backdate = 5 * time.Minute

// Default lifetimes. Each lives here only: NewRoot, NewIntermediate,
// Plan and the ewgw certs flags read them.
const (
	// DefaultRootTTL is a root CA's lifetime: long, because replacing a root
	// means redistributing every bundle.
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
	// DefaultCATTL is an intermediate CA's lifetime: a year, renewed under
	// the same root.
	DefaultCATTL = 365 * 24 * time.Hour
	// DefaultSVIDTTL is a gateway SVID's lifetime: short, so that a stolen
	// key is soon useless.
	DefaultSVIDTTL = 24 * time.Hour
)

// CA is a certificate authority: a root or an intermediate, with its key.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs what the CA issues: ECDSA P-256 for the CAs certgen
	// makes; ParseCA also takes RSA and Ed25519 keys (an Istio plug-in CA's
	// is often RSA).
	Key crypto.Signer
	// Parents are the CA's issuers, nearest first, ending with the root; nil
	// for a root.
	Parents []*x509.Certificate

	now func() time.Time
}

// RootOptions configure NewRoot. Zero fields take the defaults given.
type RootOptions struct {
	// CommonName of the root. Default "ewgw root CA".
	CommonName string
	// TrustDomain, when set, adds the URI SAN spiffe://<TrustDomain>, as SPIRE
	// does for its CAs. Leave it empty for a root shared by several trust
	// domains.
	TrustDomain string
	// TTL is the root's lifetime. Default DefaultRootTTL (10 years).
	TTL time.Duration
	// Now is the clock for validity periods; CAs issued below inherit it.
	// Default time.Now.
	Now func() time.Time
}

// IntermediateOptions configure NewIntermediate. Zero fields take the
// defaults given.
type IntermediateOptions struct {
	// Cluster names the cluster; it becomes the subject's Locality, as in
	// Istio's tools/certs Makefile, so the chain says which cluster issued a
	// certificate even when trust domains are shared.
	Cluster string
	// CommonName of the intermediate. Default "ewgw intermediate CA <Cluster>".
	CommonName string
	// TrustDomain, when set, adds the URI SAN spiffe://<TrustDomain> and a
	// critical name constraints extension permitting only URIs whose host
	// is TrustDomain (RFC 5280 §4.2.1.10), so that verifiers refuse any
	// SPIFFE ID outside the trust domain that the intermediate signs. DNS
	// names, e.g. istiod's serving certificate, stay unconstrained. Go and
	// OpenSSL differ on subdomains: Go also lets such a constraint match
	// x.<TrustDomain>; package identity refuses that in its own check.
	TrustDomain string
	// TTL is the intermediate's lifetime, capped at the issuer's. Default
	// DefaultCATTL (1 year).
	TTL time.Duration
}

// NewRoot creates a self-signed root CA.
func NewRoot(opts RootOptions) (*CA, error) {
	if opts.CommonName == "" {
		opts.CommonName = "ewgw root CA"
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultRootTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(opts.CommonName, "", opts.TrustDomain, opts.Now(), opts.TTL)
	if err != nil {
		return nil, err
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	return &CA{Cert: cert, Key: key, now: opts.Now}, nil
}

// NewIntermediate creates an intermediate CA signed by ca, with path length 0:
// it may issue leaf certificates only, and with a trust domain only leaves in
// that trust domain.
func (ca *CA) NewIntermediate(opts IntermediateOptions) (*CA, error) {
	if opts.CommonName == "" {
		opts.CommonName = "ewgw intermediate CA " + opts.Cluster
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultCATTL
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(opts.CommonName, opts.Cluster, opts.TrustDomain, ca.clock(), opts.TTL)
	if err != nil {
		return nil, err
	}
	tmpl.MaxPathLenZero = true
	if opts.TrustDomain != "" {
		tmpl.PermittedURIDomains = []string{opts.TrustDomain}
		// Names the whole extension's criticality, not only DNS; RFC 5280
		// says conforming CAs MUST mark name constraints critical.
		tmpl.PermittedDNSDomainsCritical = true
	}
	ca.clamp(tmpl)
	cert, err := sign(tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign intermediate %q: %w", opts.CommonName, err)
	}
	parents := append([]*x509.Certificate{ca.Cert}, ca.Parents...)
	return &CA{Cert: cert, Key: key, Parents: parents, now: ca.now}, nil
}

// IssueSVID issues an X509-SVID for the SPIFFE ID id (spiffe://td/path), valid
// for ttl (capped at the CA's own expiry), with a fresh ECDSA P-256 key.
// certPEM holds the leaf followed by the intermediates, without the root;
// keyPEM is the key in PKCS#8 ("PRIVATE KEY").
func (ca *CA) IssueSVID(id string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = ca.IssueSVIDForKey(id, ttl, key.Public())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = KeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// IssueSVIDForKey is IssueSVID for a caller's public key (ECDSA, RSA or
// Ed25519), e.g. to test other key types and encodings.
func (ca *CA) IssueSVIDForKey(id string, ttl time.Duration, pub crypto.PublicKey) ([]byte, error) {
	leaf, err := ca.IssueLeaf(id, ttl, pub)
	if err != nil {
		return nil, err
	}
	return CertsPEM(append([]*x509.Certificate{leaf}, ca.Intermediates()...)...), nil
}

// IssueLeaf issues the X509-SVID leaf certificate for the SPIFFE ID id and
// the public key pub, valid from a moment ago (backdate) for ttl, capped at
// the CA's own expiry. Send it with ca.Intermediates().
func (ca *CA) IssueLeaf(id string, ttl time.Duration, pub crypto.PublicKey) (*x509.Certificate, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("svid %s: ttl %v must be positive", id, ttl)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := ca.clock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ewgw"}, CommonName: u.Path[1:]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		BasicConstraintsValid: true,
		IsCA:                  false,
		// X509-SVID §4.3: digitalSignature required; keyCertSign and cRLSign
		// forbidden on a leaf.
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	}
	ca.clamp(tmpl)
	leaf, err := sign(tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign svid %s: %w", id, err)
	}
	return leaf, nil
}

// CertPEM returns the CA certificate alone, PEM-encoded.
func (ca *CA) CertPEM() []byte { return CertsPEM(ca.Cert) }

// KeyPEM returns the CA key in PKCS#8, PEM-encoded.
func (ca *CA) KeyPEM() ([]byte, error) { return KeyPEM(ca.Key) }

// ChainPEM returns the CA certificate followed by its parents up to and
// including the root: Istio's cert-chain.pem.
func (ca *CA) ChainPEM() []byte {
	return CertsPEM(append([]*x509.Certificate{ca.Cert}, ca.Parents...)...)
}

// Root returns the root certificate at the top of ca's chain.
func (ca *CA) Root() *x509.Certificate {
	if len(ca.Parents) == 0 {
		return ca.Cert
	}
	return ca.Parents[len(ca.Parents)-1]
}

// RootPEM returns the root certificate, PEM-encoded: a trust bundle.
func (ca *CA) RootPEM() []byte { return CertsPEM(ca.Root()) }

// Intermediates are the certificates a leaf issued by ca is sent with: ca
// and its parents, nearest first, less any self-signed root (a peer takes
// the root from its bundle; RFC 8446 §4.4.2 lets a sender omit it).
func (ca *CA) Intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range append([]*x509.Certificate{ca.Cert}, ca.Parents...) {
		if !selfSigned(c) {
			out = append(out, c)
		}
	}
	return out
}

// selfSigned reports whether c is a root: issued by its own subject and
// signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func (ca *CA) clock() time.Time {
	if ca.now == nil {
		return time.Now()
	}
	return ca.now()
}

// clamp keeps a child's validity inside the issuer's, which RFC 5280 does not
// require but which chain verifiers in practice do (Go's included, through
// path validation at the verification time).
func (ca *CA) clamp(tmpl *x509.Certificate) {
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	if tmpl.NotBefore.Before(ca.Cert.NotBefore) {
		tmpl.NotBefore = ca.Cert.NotBefore
	}
}

func caTemplate(cn, locality, td string, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ewgw"}, CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		BasicConstraintsValid: true,
		IsCA:                  true,
		// X509-SVID §5.2: signing certificates must have keyCertSign.
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if locality != "" {
		tmpl.Subject.Locality = []string{locality}
	}
	if td != "" {
		if err := ValidateTrustDomain(td); err != nil {
			return nil, err
		}
		tmpl.URIs = []*url.URL{{Scheme: "spiffe", Host: td}}
	}
	return tmpl, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

func newSerial() (*big.Int, error) {
	// RFC 5280 §4.1.2.2: positive, at most 20 octets; 128 random bits.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// CertsPEM PEM-encodes certificates in order.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM PEM-encodes a private key in PKCS#8 ("PRIVATE KEY"), the only
// encoding go-spiffe's own loaders accept.
func KeyPEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
