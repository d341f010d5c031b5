package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// caShape is what a hand-made CA says about its trust domain, for shapes
// that certgen does not make: other tools' CAs, and ewgw certs'
// intermediates from before they carried name constraints.
type caShape struct {
	san       string   // URI SAN, e.g. spiffe://a.example; "" for none
	permitted []string // permitted URI domains
}

// newCA makes a CA signed by parent (nil for a self-signed root), without a
// path length limit.
func newCA(t *testing.T, parent *certgen.CA, name string, shape caShape) *certgen.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedURIDomains:   shape.permitted,
	}
	if shape.san != "" {
		u, err := url.Parse(shape.san)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	issuer, signer, parents := tmpl, any(key), []*x509.Certificate(nil)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
		parents = append([]*x509.Certificate{parent.Cert}, parent.Parents...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certgen.CA{Cert: cert, Key: key, Parents: parents}
}

func intermediate(t *testing.T, parent *certgen.CA, td string) *certgen.CA {
	t.Helper()
	ca, err := parent.NewIntermediate(certgen.IntermediateOptions{Cluster: td, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *certgen.CA, id string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueSVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// TestRogueIssuer checks verify's issuer rule with real chains. The
// verifier "shared" holds the ewgw certs layout: one root for b.example,
// c.example (its own) and x.b.example. The verifier "b only" holds the
// shared root for b.example alone, and its own domain has another root.
func TestRogueIssuer(t *testing.T) {
	shared := newCA(t, nil, "shared root", caShape{})
	ownB := intermediate(t, shared, "b.example")
	ownC := intermediate(t, shared, "c.example")
	constrainedA := intermediate(t, shared, "a.example")
	sanOnlyA := newCA(t, shared, "a, SAN only", caShape{san: "spiffe://a.example"})
	bare := newCA(t, shared, "bare", caShape{})
	spireB := newCA(t, newCA(t, shared, "upstream", caShape{}), "spire b", caShape{san: "spiffe://b.example"})
	wide := newCA(t, shared, "every .example", caShape{permitted: []string{".example"}})
	constrainedB := newCA(t, shared, "b, constraint only", caShape{permitted: []string{"b.example"}})
	underA := newCA(t, sanOnlyA, "b under a", caShape{san: "spiffe://b.example"})
	alone := newCA(t, nil, "root of b alone", caShape{})
	spireRoot := newCA(t, nil, "spire root", caShape{san: "spiffe://b.example"})
	d := newDomain(t, "d.example")

	ownCert, ownKey := issue(t, ownC, "spiffe://c.example/ns/ewgw/sa/ewgw")
	sharedVerifier := newSource(t, identity{cert: ownCert, key: ownKey, bundles: map[string][]byte{
		"b.example": shared.CertPEM(), "c.example": shared.CertPEM(), "x.b.example": shared.CertPEM(),
	}})
	dCert, dKey := d.svid(t, "/ns/ewgw/sa/ewgw")
	bOnly := func(root *certgen.CA) *Source {
		return newSource(t, identity{cert: dCert, key: dKey, bundles: map[string][]byte{
			"d.example": d.bundle(), "b.example": root.CertPEM(),
		}})
	}

	const bID = "spiffe://b.example/ns/ewgw/sa/ewgw"
	tests := []struct {
		name     string
		verifier *Source
		issuer   *certgen.CA
		id       string
		wantErr  bool
	}{
		{name: "own intermediate of b", verifier: sharedVerifier, issuer: ownB, id: bID},
		{name: "a's constrained intermediate", verifier: sharedVerifier, issuer: constrainedA, id: bID, wantErr: true},
		{name: "a's intermediate without constraints", verifier: sharedVerifier, issuer: sanOnlyA, id: bID, wantErr: true},
		{name: "unbound intermediate under the shared root", verifier: sharedVerifier, issuer: bare, id: bID, wantErr: true},
		{name: "leaf of the shared root itself", verifier: sharedVerifier, issuer: shared, id: bID, wantErr: true},
		{name: "intermediate for every .example", verifier: sharedVerifier, issuer: wide, id: bID, wantErr: true},
		{name: "b's CA below a's", verifier: sharedVerifier, issuer: underA, id: bID, wantErr: true},
		{name: "b's CA signing a subdomain trust domain", verifier: sharedVerifier, issuer: ownB, id: "spiffe://x.b.example/ns/ewgw/sa/ewgw", wantErr: true},
		{name: "b's constraint-only CA", verifier: sharedVerifier, issuer: constrainedB, id: bID},
		{name: "b's constraint-only CA signing a subdomain trust domain", verifier: sharedVerifier, issuer: constrainedB, id: "spiffe://x.b.example/ns/ewgw/sa/ewgw", wantErr: true},
		{name: "spire CA under a bare upstream CA", verifier: sharedVerifier, issuer: spireB, id: bID},
		{name: "b only: a's constrained intermediate", verifier: bOnly(shared), issuer: constrainedA, id: bID, wantErr: true},
		{name: "b only: a's intermediate without constraints", verifier: bOnly(shared), issuer: sanOnlyA, id: bID, wantErr: true},
		{name: "b only: own intermediate of b", verifier: bOnly(shared), issuer: ownB, id: bID},
		// A root that anchors b alone binds what it signs to b, as a
		// csi-driver-spiffe or cert-manager CA does.
		{name: "b only: unbound intermediate", verifier: bOnly(alone), issuer: newCA(t, alone, "bare b", caShape{}), id: bID},
		{name: "b only: leaf of the root", verifier: bOnly(alone), issuer: alone, id: bID},
		{name: "b only: spire root", verifier: bOnly(spireRoot), issuer: spireRoot, id: bID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, _ := issue(t, tt.issuer, tt.id)
			err := tt.verifier.verify(parseChain(t, certPEM), authz(t, []string{"b.example", "x.b.example"}, nil, nil))
			var re *RejectError
			switch {
			case !tt.wantErr && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantErr && (!errors.As(err, &re) || re.Reason != reasonBadChain):
				t.Errorf("err = %v, want a %s rejection", err, reasonBadChain)
			}
		})
	}
}

func parseChain(t *testing.T, certPEM []byte) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return chain
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
}

// TestHandshakeRefusesRogueIntermediate is the attack on the ewgw certs
// setup: cluster-a's CA mints cluster-b's gateway ID, and cluster-c, which
// allows exactly that ID, must refuse it over a real TLS handshake.
func TestHandshakeRefusesRogueIntermediate(t *testing.T) {
	setup, err := certgen.Generate(certgen.Plan{Clusters: []string{"cluster-a", "cluster-b", "cluster-c"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := setup.Clusters[0], setup.Clusters[1], setup.Clusters[2]
	// cluster-a's CA as ewgw certs made it before name constraints.
	oldA := newCA(t, setup.Shared, "ewgw intermediate CA cluster-a", caShape{san: "spiffe://" + a.TrustDomain})
	tests := []struct {
		name    string
		issuer  *certgen.CA
		wantErr bool
	}{
		{name: "cluster-b's own CA", issuer: b.Intermediate},
		{name: "cluster-a's CA", issuer: a.Intermediate, wantErr: true},
		{name: "cluster-a's CA without name constraints", issuer: oldA, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := clusterSource(t, c)
			cliCert, cliKey := issue(t, tt.issuer, b.ID)
			cli := newSource(t, identity{cert: cliCert, key: cliKey, bundles: map[string][]byte{b.TrustDomain: b.Bundles[b.TrustDomain], c.TrustDomain: b.Bundles[c.TrustDomain]}})

			r := handshake(t, srv.ServerTLSConfig(authz(t, nil, []string{b.ID}, nil)), clientConfig(cli, authz(t, []string{c.TrustDomain}, nil, nil)))

			wantServer := ""
			if tt.wantErr {
				wantServer = reasonBadChain
			}
			checkVerdict(t, srv, cli, r, wantServer, "")
		})
	}
}

// clusterSource loads a cluster's identity files as ewgw certs writes them.
func clusterSource(t *testing.T, c *certgen.Cluster) *Source {
	t.Helper()
	dir := t.TempDir()
	if _, err := certgen.WriteFiles(dir, c.IdentityFiles(), false); err != nil {
		t.Fatal(err)
	}
	fc := &FileConfig{CertChain: filepath.Join(dir, certgen.FileSVID), Key: filepath.Join(dir, certgen.FileSVIDKey), Bundles: map[string]string{}}
	for _, td := range c.TrustDomains() {
		fc.Bundles[td] = filepath.Join(dir, certgen.BundleFile(c.TrustDomain, td))
	}
	s, err := New(t.Context(), Config{Files: fc, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSharedRootWithoutBundleList: a Workload API source cannot list its
// bundles, so sharing is judged from its own trust domain and the policy's.
func TestSharedRootWithoutBundleList(t *testing.T) {
	shared := newCA(t, nil, "shared root", caShape{})
	other := newCA(t, nil, "other root", caShape{})
	ownPEM, ownKey := issue(t, intermediate(t, shared, "c.example"), "spiffe://c.example/ns/ewgw/sa/ewgw")
	own, err := x509svid.Parse(ownPEM, ownKey)
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(td string, ca *certgen.CA) *x509bundle.Bundle {
		return x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{ca.Cert})
	}
	b := spiffeid.RequireTrustDomainFromString("b.example")
	tests := []struct {
		name    string
		bundles *x509bundle.Set
		policy  []string
		want    bool
	}{
		{name: "root also the own domain's", bundles: x509bundle.NewSet(bundle("b.example", shared), bundle("c.example", shared)), policy: []string{"b.example"}, want: true},
		{name: "root also a policy domain's", bundles: x509bundle.NewSet(bundle("b.example", shared), bundle("c.example", other), bundle("e.example", shared)), policy: []string{"b.example", "e.example"}, want: true},
		{name: "root of b alone", bundles: x509bundle.NewSet(bundle("b.example", shared), bundle("c.example", other)), policy: []string{"b.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Source{svids: own, bundles: tt.bundles}
			if got := s.sharedRoot(shared.Cert, b, authz(t, tt.policy, nil, nil)); got != tt.want {
				t.Errorf("sharedRoot = %v, want %v", got, tt.want)
			}
		})
	}
}
