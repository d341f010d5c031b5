package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

// testCA is a SPIFFE-style trust domain root, built with crypto/x509 so the
// tests do not depend on go-spiffe.
type testCA struct {
	td   string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, td string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: td + " root"},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{td: td, cert: cert, key: key}
}

// leaf issues an X.509-SVID for the SPIFFE ID spiffe://td/path.
func (ca *testCA) leaf(t *testing.T, path string) tls.Certificate {
	t.Helper()
	return ca.leafUntil(t, path, time.Now().Add(time.Hour))
}

// leafUntil is leaf expiring at notAfter.
func (ca *testCA) leafUntil(t *testing.T, path string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		URIs:         []*url.URL{{Scheme: "spiffe", Host: ca.td, Path: path}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsConfigs returns server and client configs presenting leaf and
// accepting peers whose chain ends at one of trust and whose ID is in that
// CA's trust domain, checked in VerifyConnection as identity does.
func tlsConfigs(leaf tls.Certificate, trust ...*testCA) (server, client *tls.Config) {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		leafCert := cs.PeerCertificates[0]
		for _, ca := range trust {
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leafCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err == nil && len(leafCert.URIs) == 1 &&
				strings.HasPrefix(leafCert.URIs[0].String(), "spiffe://"+ca.td+"/") {
				return nil
			}
		}
		return errors.New("peer not trusted")
	}
	server = &tls.Config{
		Certificates:     []tls.Certificate{leaf},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{leaf},
		// The chain and SPIFFE ID are checked in VerifyConnection, as
		// go-spiffe does; there is no DNS name to check.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
	return server, client
}
