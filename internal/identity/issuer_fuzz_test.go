package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzPermits is a differential check of permits, which reads the URI name
// constraints of CAs that a peer sends: it may be stricter than Go's chain
// verification, never looser. Whenever permits lets a constraint cover a
// trust domain, Go must verify a leaf in that trust domain under a CA with
// that constraint.
func FuzzPermits(f *testing.F) {
	for _, s := range [][2]string{
		{"b.example", "b.example"}, {"B.Example", "b.example"}, {".example", "b.example"},
		{"b.example", "x.b.example"}, {".b.example", "b.example"}, {"example", "b.example"},
		{"b.example.", "b.example"}, {"", "b.example"}, {".", "b.example"}, {"b_x.example", "b_x.example"},
	} {
		f.Add(s[0], s[1])
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, constraint, tdName string) {
		td, err := spiffeid.TrustDomainFromString(tdName)
		if err != nil || !permits(constraint, td) {
			return
		}
		caTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
			PermittedURIDomains: []string{constraint}, PermittedDNSDomainsCritical: true,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
		if err != nil {
			return // a constraint that cannot be encoded never reaches permits from a peer
		}
		ca, err := x509.ParseCertificate(caDER)
		if err != nil {
			return
		}
		leafTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
			URIs:     []*url.URL{{Scheme: "spiffe", Host: td.Name(), Path: "/x"}},
		}
		leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, leafKey.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(leafDER)
		if err != nil {
			return // a leaf Go cannot parse (e.g. an empty DNS label) never reaches permits
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("permits(%q, %s) = true, but Go refuses: %v", constraint, td, err)
		}
	})
}
