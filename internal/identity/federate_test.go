package identity

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// certs parses PEM certificates.
func certs(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	cs, err := certgen.ParseCerts(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// ders returns the DER of each certificate.
func ders(cs ...*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

// TestFederateRootRotation: b.example rotates its root with overlap; a
// gateway of a.example that started from b's old root takes b's
// announcements (old and new, then new alone), each vouched for by the
// bundle before it, and verifies b's chains accordingly.
func TestFederateRootRotation(t *testing.T) {
	a, oldB, newB := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "b.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	s := newSource(t, trusting(cert, key, a, oldB))
	auth := authz(t, []string{"b.example"}, nil, nil)
	oldPEM, _ := oldB.svid(t, "/ns/ewgw/sa/ewgw")
	newPEM, _ := newB.svid(t, "/ns/ewgw/sa/ewgw")
	oldChain, newChain := certs(t, oldPEM), certs(t, newPEM)
	oldRoot, newRoot := certs(t, oldB.bundle())[0], certs(t, newB.bundle())[0]

	if err := s.verify(newChain, auth); err == nil {
		t.Fatal("a new-root chain verified before federation")
	}
	step := func(roots [][]byte, chain []*x509.Certificate, wantChanged bool) {
		t.Helper()
		changed, err := s.Federate("b.example", roots, chain)
		if err != nil || changed != wantChanged {
			t.Fatalf("Federate: changed %v, err %v; want changed %v", changed, err, wantChanged)
		}
	}
	step(ders(oldRoot, newRoot), oldChain, true) // overlap, vouched by the old root
	step(ders(oldRoot, newRoot), oldChain, false)
	for name, chain := range map[string][]*x509.Certificate{"old": oldChain, "new": newChain} {
		if err := s.verify(chain, auth); err != nil {
			t.Errorf("%s-root chain during the overlap: %v", name, err)
		}
	}
	if e := s.Expiry().Bundles; e[1].TrustDomain != "b.example" || e[1].Roots != 2 || !e[1].Federated || e[0].Federated {
		t.Errorf("expiry bundles %+v", e)
	}
	step(ders(newRoot), newChain, true) // the old root goes, vouched by the overlap
	if err := s.verify(oldChain, auth); err == nil {
		t.Error("an old-root chain verified after the old root went")
	}
	if err := s.verify(newChain, auth); err != nil {
		t.Errorf("new-root chain: %v", err)
	}
	if n := testutil.ToFloat64(s.m.federated); n != 2 {
		t.Errorf("federated bundles %v, want 2", n)
	}
}

func TestFederateRefuses(t *testing.T) {
	a, b, rogue, c := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "b.example"), newDomain(t, "c.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	s := newSource(t, trusting(cert, key, a, b))
	bPEM, _ := b.svid(t, "/ns/ewgw/sa/ewgw")
	roguePEM, _ := rogue.svid(t, "/ns/ewgw/sa/ewgw")
	cPEM, _ := c.svid(t, "/ns/ewgw/sa/ewgw")
	bChain := certs(t, bPEM)
	rogueRoot := certs(t, rogue.bundle())[0]
	tests := []struct {
		name  string
		td    string
		roots [][]byte
		chain []*x509.Certificate
		want  error // nil: any error
	}{
		{name: "announcer not vouched for", td: "b.example", roots: ders(rogueRoot), chain: certs(t, roguePEM)},
		{name: "announcer of another trust domain", td: "b.example", roots: ders(rogueRoot), chain: certs(t, cPEM)},
		{name: "no configured bundle", td: "c.example", roots: ders(certs(t, c.bundle())[0]), chain: certs(t, cPEM)},
		{name: "own trust domain", td: "a.example", roots: ders(rogueRoot), chain: bChain, want: ErrOwnDomain},
		{name: "a leaf as a root", td: "b.example", roots: ders(bChain[0]), chain: bChain},
		{name: "not a certificate", td: "b.example", roots: [][]byte{{0x30, 0}}, chain: bChain},
		{name: "no roots", td: "b.example", chain: bChain},
		{name: "no announcer", td: "b.example", roots: ders(rogueRoot)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := s.Federate(tt.td, tt.roots, tt.chain)
			if err == nil || changed || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("changed %v, err %v", changed, err)
			}
			if got, _ := s.bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("b.example")); got.HasX509Authority(rogueRoot) {
				t.Fatal("the rogue root is trusted")
			}
		})
	}
}

// TestFederateFileSupersedes: an edit to a trust domain's bundle file
// takes the domain back from what peers announced.
func TestFederateFileSupersedes(t *testing.T) {
	a, b, next, other := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "b.example"), newDomain(t, "b.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	fc := writeIdentity(t, t.TempDir(), trusting(cert, key, a, b))
	s := newSourceFrom(t, fc)
	bPEM, _ := b.svid(t, "/ns/ewgw/sa/ewgw")
	if _, err := s.Federate("b.example", ders(certs(t, next.bundle())[0]), certs(t, bPEM)); err != nil {
		t.Fatal(err)
	}
	write(t, fc.Bundles["b.example"], other.bundle())
	s.reload()
	got, _ := s.bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("b.example"))
	if want := certs(t, other.bundle())[0]; len(got.X509Authorities()) != 1 || !got.HasX509Authority(want) {
		t.Fatalf("b.example's bundle after the edit holds %d roots, not the edited one", len(got.X509Authorities()))
	}
}

func TestOwnBundle(t *testing.T) {
	a, b, rogue := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "a.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	td, roots, err := newSource(t, trusting(cert, key, a, b)).OwnBundle()
	if err != nil || td != "a.example" || len(roots) != 1 || !certs(t, a.bundle())[0].Equal(mustParse(t, roots[0])) {
		t.Fatalf("OwnBundle: %s, %d roots, %v", td, len(roots), err)
	}
	if _, _, err := newSource(t, trusting(cert, key, rogue, b)).OwnBundle(); err == nil {
		t.Fatal("announced a bundle the own SVID does not verify against")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newSourceFrom loads a Source from files already written.
func newSourceFrom(t *testing.T, fc *FileConfig) *Source {
	t.Helper()
	s, err := New(t.Context(), Config{Files: fc, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
