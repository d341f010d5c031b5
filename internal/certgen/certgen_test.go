package certgen

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"
)

func parseCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return certs
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
}

func TestIssueSVIDShape(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	root, err := NewRoot(RootOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(IntermediateOptions{Cluster: "cluster-a", TrustDomain: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := inter.IssueSVID("spiffe://a.example/ns/ewgw/sa/ewgw", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(keyPEM); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key is not PKCS#8 PEM: %q", keyPEM)
	}
	chain := parseCerts(t, certPEM)
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and intermediate", len(chain))
	}
	leaf, ic := chain[0], chain[1]
	if got := leaf.URIs; len(got) != 1 || got[0].String() != "spiffe://a.example/ns/ewgw/sa/ewgw" {
		t.Errorf("leaf URIs = %v", got)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf IsCA=%v KeyUsage=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 2 {
		t.Errorf("leaf EKU = %v, want serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
	if !leaf.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("leaf NotAfter = %v", leaf.NotAfter)
	}
	if !ic.IsCA || ic.MaxPathLen != 0 || !ic.MaxPathLenZero || ic.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("intermediate IsCA=%v MaxPathLen=%d zero=%v KeyUsage=%v", ic.IsCA, ic.MaxPathLen, ic.MaxPathLenZero, ic.KeyUsage)
	}
	if len(ic.URIs) != 1 || ic.URIs[0].String() != "spiffe://a.example" || ic.Subject.Locality[0] != "cluster-a" {
		t.Errorf("intermediate URIs=%v subject=%v", ic.URIs, ic.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	inters := x509.NewCertPool()
	inters.AddCert(ic)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	// An intermediate with pathlen 0 cannot issue another CA.
	sub, err := inter.NewIntermediate(IntermediateOptions{Cluster: "x"})
	if err != nil {
		t.Fatal(err)
	}
	subLeaf, _, err := sub.IssueSVID("spiffe://a.example/x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc := parseCerts(t, subLeaf)
	inters.AddCert(sc[1])
	if _, err := sc[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now}); err == nil {
		t.Error("chain through a pathlen-0 intermediate verified")
	}
}

func TestIssueSVIDBadInput(t *testing.T) {
	root, err := NewRoot(RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   string
		ttl  time.Duration
	}{
		{name: "no scheme", id: "a.example/ns/x", ttl: time.Hour},
		{name: "root id", id: "spiffe://a.example", ttl: time.Hour},
		{name: "upper-case trust domain", id: "spiffe://A.example/x", ttl: time.Hour},
		{name: "dot segment", id: "spiffe://a.example/ns/../x", ttl: time.Hour},
		{name: "empty segment", id: "spiffe://a.example/ns//x", ttl: time.Hour},
		{name: "zero ttl", id: "spiffe://a.example/x", ttl: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := root.IssueSVID(tt.id, tt.ttl); err == nil {
				t.Errorf("IssueSVID(%q, %v) succeeded", tt.id, tt.ttl)
			}
		})
	}
}

func TestClampToIssuer(t *testing.T) {
	root, err := NewRoot(RootOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := root.IssueSVID("spiffe://a.example/x", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := parseCerts(t, certPEM)[0]; leaf.NotAfter.After(root.Cert.NotAfter) {
		t.Errorf("leaf outlives its issuer: %v > %v", leaf.NotAfter, root.Cert.NotAfter)
	}
	if got := len(parseCerts(t, certPEM)); got != 1 {
		t.Errorf("leaf issued by a root carries %d certificates, want 1 (no root)", got)
	}
}

func TestGatewayID(t *testing.T) {
	id, err := GatewayID("a.example", "ewgw", "gw")
	if err != nil || id != "spiffe://a.example/ns/ewgw/sa/gw" {
		t.Errorf("GatewayID = %q, %v", id, err)
	}
	if _, err := GatewayID("a.example", "bad/ns", "gw"); !errors.Is(err, ErrBadName) {
		t.Errorf("GatewayID with a slash in the namespace: err = %v, want ErrBadName", err)
	}
}

// TestIntermediateNameConstraints: an intermediate with a trust domain can
// only sign leaves in it, even under a root shared with other trust domains.
func TestIntermediateNameConstraints(t *testing.T) {
	root, err := NewRoot(RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(IntermediateOptions{Cluster: "cluster-a", TrustDomain: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	if got := inter.Cert.PermittedURIDomains; !slices.Equal(got, []string{"a.example"}) {
		t.Errorf("PermittedURIDomains = %v, want [a.example]", got)
	}
	if !extensionCritical(inter.Cert, []int{2, 5, 29, 30}) {
		t.Error("name constraints extension is missing or not critical")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{name: "own trust domain", id: "spiffe://a.example/ns/ewgw/sa/ewgw", ok: true},
		{name: "other trust domain", id: "spiffe://b.example/ns/ewgw/sa/ewgw"},
		{name: "suffix without a dot", id: "spiffe://aa.example/ns/ewgw/sa/ewgw"},
		// Go reads a constraint without a leading dot as covering
		// subdomains too; package identity refuses these itself.
		{name: "subdomain (Go accepts)", id: "spiffe://x.a.example/ns/ewgw/sa/ewgw", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, _, err := inter.IssueSVID(tt.id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			chain := parseCerts(t, certPEM)
			inters := x509.NewCertPool()
			inters.AddCert(chain[1])
			_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			var ce x509.CertificateInvalidError
			switch {
			case tt.ok && err != nil:
				t.Errorf("verify: %v", err)
			case !tt.ok && (!errors.As(err, &ce) || ce.Reason != x509.CANotAuthorizedForThisName):
				t.Errorf("verify: err = %v, want CANotAuthorizedForThisName", err)
			}
		})
	}
}

func extensionCritical(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical
		}
	}
	return false
}
