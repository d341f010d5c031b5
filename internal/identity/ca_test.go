package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// writeCA writes d's intermediate (cert-chain.pem with the root, ca-key.pem)
// and bundles for ds into dir, and returns the CA source's config.
func writeCA(t *testing.T, dir string, inter *certgen.CA, ds ...*domain) *CAConfig {
	t.Helper()
	key, err := inter.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	c := &CAConfig{CertChain: filepath.Join(dir, certgen.FileCertChain), Key: filepath.Join(dir, certgen.FileCAKey), Bundles: map[string]string{}}
	write(t, c.CertChain, inter.ChainPEM())
	write(t, c.Key, key)
	for _, d := range ds {
		c.Bundles[d.td] = filepath.Join(dir, "bundle-"+d.td+".pem")
		write(t, c.Bundles[d.td], d.bundle())
	}
	return c
}

func newCASource(t *testing.T, c *CAConfig, reg prometheus.Registerer, log *slog.Logger) *Source {
	t.Helper()
	s, err := New(t.Context(), Config{CA: c, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCAIssues: the CA source issues an SVID for the default or configured
// ID, sent with the intermediate and without the root, valid for the TTL,
// that peers trusting the domain's bundle accept.
func TestCAIssues(t *testing.T) {
	a, b := newDomain(t, "a.example"), newDomain(t, "b.example")
	tests := []struct {
		name   string
		cfg    CAConfig
		wantID string
	}{
		{name: "default id", wantID: "spiffe://a.example/ns/ewgw/sa/ewgw"},
		{name: "namespace and service account", cfg: CAConfig{Namespace: "gw", ServiceAccount: "edge"}, wantID: "spiffe://a.example/ns/gw/sa/edge"},
		{name: "id", cfg: CAConfig{ID: "spiffe://a.example/gateway/eu-1"}, wantID: "spiffe://a.example/gateway/eu-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := writeCA(t, t.TempDir(), a.inter, a, b)
			c.ID, c.Namespace, c.ServiceAccount, c.TTL = tt.cfg.ID, tt.cfg.Namespace, tt.cfg.ServiceAccount, time.Hour
			s := newCASource(t, c, prometheus.NewRegistry(), nil)
			if got := s.ID(); got != tt.wantID {
				t.Errorf("ID = %s, want %s", got, tt.wantID)
			}
			svid, _ := s.svids.GetX509SVID()
			if n := len(svid.Certificates); n != 2 || !svid.Certificates[1].Equal(a.inter.Cert) {
				t.Errorf("chain has %d certificates, want the leaf and the intermediate", n)
			}
			if got, want := s.Expiry().SVIDIssuerKeyID, hex.EncodeToString(a.inter.Cert.SubjectKeyId); got != want || got == "" {
				t.Errorf("Expiry().SVIDIssuerKeyID = %q, want the intermediate's %q", got, want)
			}
			leaf := svid.Certificates[0]
			if life := time.Until(leaf.NotAfter); life < 59*time.Minute || life > time.Hour {
				t.Errorf("leaf expires in %v, want the 1h TTL", life)
			}
			peer := newSource(t, trusting(b.svid(t, "/ns/ewgw/sa/ewgw")).with(a))
			r := handshake(t, s.ServerTLSConfig(authz(t, []string{"b.example"}, nil, nil)), clientConfig(peer, authz(t, []string{"a.example"}, nil, nil)))
			checkVerdict(t, s, peer, r, "", "")
		})
	}
}

// with adds ds' bundles to id.
func (id identity) with(ds ...*domain) identity {
	for _, d := range ds {
		id.bundles[d.td] = d.bundle()
	}
	return id
}

// TestCARefuses: CA files that cannot issue a usable SVID fail New with the
// reason.
func TestCARefuses(t *testing.T) {
	a := newDomain(t, "a.example")
	plain, err := certgen.NewRoot(certgen.RootOptions{CommonName: "no trust domain"})
	if err != nil {
		t.Fatal(err)
	}
	plainInter, err := plain.NewIntermediate(certgen.IntermediateOptions{Cluster: "x"})
	if err != nil {
		t.Fatal(err)
	}
	svidCert, svidKey := a.svid(t, "/ns/ewgw/sa/ewgw")
	tests := []struct {
		name   string
		inter  *certgen.CA
		modify func(c *CAConfig)
		want   string
	}{
		{name: "id in another trust domain", inter: a.inter, modify: func(c *CAConfig) { c.ID = "spiffe://b.example/ns/ewgw/sa/ewgw" }, want: "not to b.example"},
		{name: "ca naming no trust domain", inter: plainInter, want: "names no trust domain"},
		{name: "not a ca", inter: a.inter, modify: func(c *CAConfig) { write(t, c.CertChain, svidCert); write(t, c.Key, svidKey) }, want: "is not a CA"},
		{name: "key of another ca", inter: a.inter, modify: func(c *CAConfig) { k, _ := plainInter.KeyPEM(); write(t, c.Key, k) }, want: "not the key of CA"},
		{name: "no key path", inter: a.inter, modify: func(c *CAConfig) { c.Key = "" }, want: "chain and key paths are required"},
		{name: "no bundles", inter: a.inter, modify: func(c *CAConfig) { c.Bundles = nil }, want: "no trust bundle paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := writeCA(t, t.TempDir(), tt.inter, a)
			if tt.modify != nil {
				tt.modify(c)
			}
			s, err := New(t.Context(), Config{CA: c, Registerer: prometheus.NewRegistry()})
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// TestCARenewsAtHalfLife: Run issues a new SVID, with a new key, at half of
// the current one's life, again and again, without the files changing.
func TestCARenewsAtHalfLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDomain(t, "a.example")
		c := writeCA(t, t.TempDir(), a.inter, a)
		c.TTL = time.Hour
		reg := prometheus.NewRegistry()
		s := newCASource(t, c, reg, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		prev, _ := s.svids.GetX509SVID()
		for i := range 5 {
			time.Sleep(30*time.Minute - time.Second)
			synctest.Wait()
			if cur, _ := s.svids.GetX509SVID(); cur != prev {
				t.Fatalf("renewal %d: renewed before half-life", i+1)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			cur, _ := s.svids.GetX509SVID()
			if cur == prev {
				t.Fatalf("renewal %d: not renewed at half-life", i+1)
			}
			if cur.PrivateKey.Public().(*ecdsa.PublicKey).Equal(prev.PrivateKey.Public()) {
				t.Errorf("renewal %d: same key", i+1)
			}
			if got, want := cur.Certificates[0].NotAfter, time.Now().Add(time.Hour); !got.Equal(want) {
				t.Errorf("renewal %d: not after %v, want %v", i+1, got, want)
			}
			prev = cur
		}
		if got := testutil.ToFloat64(s.m.rotations); got != 5 {
			t.Errorf("rotations = %v, want 5", got)
		}
		if got := gauge(t, reg, "ewgw_identity_svid_expiry_seconds"); got != 3600 {
			t.Errorf("svid expiry = %v, want 3600", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// TestCAReload: a new intermediate written over the CA files is taken at
// the next poll, a new SVID issued from it at once, and renewal goes on
// from the new SVID's half-life.
func TestCAReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDomain(t, "a.example")
		c := writeCA(t, t.TempDir(), a.inter, a)
		c.TTL = time.Hour
		s, err := New(t.Context(), Config{CA: c, Registerer: prometheus.NewRegistry(), PollInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		time.Sleep(20*time.Minute + 5*time.Second) // between two polls
		renewed := a.renewIntermediate(t)
		key, _ := renewed.KeyPEM()
		write(t, c.Key, key)
		write(t, c.CertChain, renewed.ChainPEM())
		time.Sleep(10 * time.Second)
		synctest.Wait()
		svid, _ := s.svids.GetX509SVID()
		if !svid.Certificates[1].Equal(renewed.Cert) {
			t.Fatal("the SVID is not issued by the new intermediate")
		}
		issued := svid.Certificates[0].NotAfter.Add(-time.Hour)
		time.Sleep(time.Until(issued.Add(30*time.Minute - time.Second))) // the old SVID's half-life has passed
		synctest.Wait()
		if cur, _ := s.svids.GetX509SVID(); cur != svid {
			t.Error("renewed on the old SVID's schedule")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if cur, _ := s.svids.GetX509SVID(); cur == svid || !cur.Certificates[0].NotAfter.Equal(issued.Add(30*time.Minute+time.Hour)) {
			t.Error("not renewed at the new SVID's half-life")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// renewIntermediate issues d a new intermediate under the same root.
func (d *domain) renewIntermediate(t *testing.T) *certgen.CA {
	t.Helper()
	root := &certgen.CA{Cert: d.inter.Root(), Key: d.rootKey}
	inter, err := root.NewIntermediate(certgen.IntermediateOptions{Cluster: d.td, TrustDomain: d.td})
	if err != nil {
		t.Fatal(err)
	}
	return inter
}

// TestCAExpiry: the expiry gauges and Expiry report the SVID, the CA (its
// earliest-expiring certificate) and each bundle's first root to expire;
// a CA with less than CAWarnBefore left is warned about at start.
func TestCAExpiry(t *testing.T) {
	now := time.Now()
	root, err := certgen.NewRoot(certgen.RootOptions{TrustDomain: "a.example", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(certgen.IntermediateOptions{Cluster: "a", TrustDomain: "a.example", TTL: 20 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := &domain{td: "a.example", inter: inter}
	b := newDomain(t, "b.example")
	c := writeCA(t, t.TempDir(), inter, a, b)
	c.TTL = time.Hour
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	s := newCASource(t, c, reg, slog.New(slog.NewTextHandler(&logs, nil)))

	e := s.Expiry()
	if left := e.SVID.Sub(now); !e.CA.Equal(inter.Cert.NotAfter) || left < 59*time.Minute || left > time.Hour+time.Second {
		t.Errorf("Expiry = %+v", e)
	}
	if len(e.Bundles) != 2 || e.Bundles[0].TrustDomain != "a.example" || !e.Bundles[0].NotAfter.Equal(root.Cert.NotAfter) || e.Bundles[0].Roots != 1 {
		t.Errorf("bundles = %+v", e.Bundles)
	}
	for _, g := range []struct {
		name   string
		labels []string
		want   time.Time
	}{
		{"ewgw_identity_svid_expiry_seconds", nil, e.SVID},
		{"ewgw_identity_ca_expiry_seconds", nil, inter.Cert.NotAfter},
		{"ewgw_identity_bundle_expiry_seconds", []string{"trust_domain", "a.example"}, root.Cert.NotAfter},
		{"ewgw_identity_bundle_expiry_seconds", []string{"trust_domain", "b.example"}, b.inter.Root().NotAfter},
	} {
		got := gauge(t, reg, g.name, g.labels...)
		if want := time.Until(g.want).Seconds(); got > want+1 || got < want-5 {
			t.Errorf("%s%v = %v, want about %v", g.name, g.labels, got, want)
		}
	}
	if !strings.Contains(logs.String(), "ca expires soon") || !strings.Contains(logs.String(), "days_left=19") {
		t.Errorf("no warning of the CA's expiry in 20 days; log:\n%s", logs.String())
	}
}

// TestFilesNoCAExpiry: without the CA source there is no CA gauge.
func TestFilesNoCAExpiry(t *testing.T) {
	a := newDomain(t, "a.example")
	reg := prometheus.NewRegistry()
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	s, err := New(t.Context(), Config{Files: writeIdentity(t, t.TempDir(), trusting(cert, key, a)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := find(t, reg, "ewgw_identity_ca_expiry_seconds"); ok {
		t.Error("ewgw_identity_ca_expiry_seconds reported without a CA")
	}
	if !s.Expiry().CA.IsZero() {
		t.Error("Expiry().CA set without a CA")
	}
}

// gauge returns the value of the gauge name with labels (name, value
// pairs) in reg, failing the test if there is none.
func gauge(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	m, ok := find(t, reg, name, labels...)
	if !ok {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return m.GetGauge().GetValue()
}

func find(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (*dto.Metric, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			return m, true
		}
	}
	return nil, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestCAForms: the CA files as other tools write them: the CA certificate
// without its root (ca-cert.pem), and an RSA key in PKCS#1, as Istio's
// plug-in CA often has, or an EC key in SEC1.
func TestCAForms(t *testing.T) {
	a := newDomain(t, "a.example")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     crypto.Signer
		keyPEM  []byte
		noRoot  bool
		wantLen int
	}{
		{name: "ca-cert.pem alone", noRoot: true},
		{name: "rsa pkcs1", key: rsaKey, keyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{name: "ec sec1", key: ecKey, keyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inter := a.inter
			if tt.key != nil {
				inter = intermediateWithKey(t, a, tt.key)
			}
			c := writeCA(t, t.TempDir(), inter, a)
			if tt.noRoot {
				write(t, c.CertChain, inter.CertPEM())
			}
			if tt.keyPEM != nil {
				write(t, c.Key, tt.keyPEM)
			}
			s := newCASource(t, c, prometheus.NewRegistry(), nil)
			svid, _ := s.svids.GetX509SVID()
			if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(inter.Cert) {
				t.Fatalf("chain of %d certificates, want the leaf and the intermediate", len(svid.Certificates))
			}
			peer := newSource(t, trusting(a.svid(t, "/ns/ewgw/sa/peer")).with(a))
			r := handshake(t, s.ServerTLSConfig(authz(t, []string{"a.example"}, nil, nil)), clientConfig(peer, authz(t, []string{"a.example"}, nil, nil)))
			checkVerdict(t, s, peer, r, "", "")
		})
	}
}

// intermediateWithKey issues d an intermediate for the given key under d's
// root, as certgen would but with a key of another type.
func intermediateWithKey(t *testing.T, d *domain, key crypto.Signer) *certgen.CA {
	t.Helper()
	tmpl := *d.inter.Cert
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.SubjectKeyId = nil
	tmpl.AuthorityKeyId = nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, d.inter.Root(), key.Public(), d.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certgen.CA{Cert: cert, Key: key, Parents: []*x509.Certificate{d.inter.Root()}}
}
