package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// kubeDir mimics a Kubernetes Secret volume: every name is a symlink
// "name -> ..data/name", "..data" points at a timestamped directory, and an
// update writes a new directory and atomically renames a new "..data" link
// over the old one (kubernetes/pkg/volume/util/atomic_writer.go).
type kubeDir struct {
	dir string
	n   int
}

func (k *kubeDir) publish(t *testing.T, files map[string][]byte) {
	t.Helper()
	k.n++
	ts := fmt.Sprintf("..2026_11_23_12_00_%02d.%d", k.n, k.n)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		write(t, filepath.Join(k.dir, ts, name), b)
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func kubeFiles(cert, key, bundle []byte) map[string][]byte {
	return map[string][]byte{"svid.pem": cert, "svid-key.pem": key, "bundle.pem": bundle}
}

func TestFileRotationSymlinkSwap(t *testing.T) {
	a := newDomain(t, "a.example")
	k := &kubeDir{dir: t.TempDir()}
	cert1, key1 := a.svid(t, "/ns/ewgw/sa/ewgw")
	k.publish(t, kubeFiles(cert1, key1, a.bundle()))
	srv, err := New(t.Context(), Config{
		Files: &FileConfig{
			CertChain: filepath.Join(k.dir, "svid.pem"),
			Key:       filepath.Join(k.dir, "svid-key.pem"),
			Bundles:   map[string]string{"a.example": filepath.Join(k.dir, "bundle.pem")},
		},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := a.svid(t, "/ns/ewgw/sa/client")
	cli := newSource(t, trusting(cliCert, cliKey, a))
	allowA := authz(t, []string{"a.example"}, nil, nil)
	srvCfg, cliCfg := srv.ServerTLSConfig(allowA), clientConfig(cli, allowA)
	servedSerial := func() *big.Int {
		t.Helper()
		r := handshake(t, srvCfg, cliCfg)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
		}
		return leafSerial(t, r.client)
	}
	counts := func(wantRotations, wantFailures float64) {
		t.Helper()
		if got := testutil.ToFloat64(srv.m.rotations); got != wantRotations {
			t.Errorf("rotations = %v, want %v", got, wantRotations)
		}
		if got := testutil.ToFloat64(srv.m.failures); got != wantFailures {
			t.Errorf("reload failures = %v, want %v", got, wantFailures)
		}
	}

	if got := servedSerial(); got.Cmp(pemSerial(t, cert1)) != 0 {
		t.Fatalf("served serial %v, want the first SVID's", got)
	}
	srv.reload() // unchanged: nothing happens
	counts(0, 0)

	cert2, key2 := a.svid(t, "/ns/ewgw/sa/ewgw")
	k.publish(t, kubeFiles(cert2, key2, a.bundle()))
	srv.reload()
	counts(1, 0)
	if got := servedSerial(); got.Cmp(pemSerial(t, cert2)) != 0 {
		t.Fatalf("after the ..data swap the served serial is %v, want the second SVID's", got)
	}

	cert3, key3 := a.svid(t, "/ns/ewgw/sa/ewgw")
	noURICert, noURIKey := selfSignedWithoutURI(t)
	bad := []struct {
		name  string
		files map[string][]byte
	}{
		{name: "key does not match the certificate", files: kubeFiles(cert3, key2, a.bundle())},
		{name: "unparsable certificate", files: kubeFiles([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key3, a.bundle())},
		{name: "no spiffe id", files: kubeFiles(noURICert, noURIKey, a.bundle())},
		{name: "ca certificate as leaf", files: kubeFiles(a.inter.CertPEM(), mustKeyPEM(t, a.inter.Key), a.bundle())},
		{name: "empty bundle", files: kubeFiles(cert3, key3, nil)},
		{name: "key missing", files: map[string][]byte{"svid.pem": cert3, "bundle.pem": a.bundle()}},
	}
	for i, b := range bad {
		k.publish(t, b.files)
		srv.reload()
		srv.reload() // the same bad files are reported once
		if t.Run(b.name, func(t *testing.T) { counts(1, float64(i+1)) }) {
			if got := servedSerial(); got.Cmp(pemSerial(t, cert2)) != 0 {
				t.Errorf("%s: served serial %v, want the last good SVID's", b.name, got)
			}
		}
	}

	k.publish(t, kubeFiles(cert3, key3, a.bundle()))
	srv.reload()
	counts(2, float64(len(bad)))
	if got := servedSerial(); got.Cmp(pemSerial(t, cert3)) != 0 {
		t.Fatalf("after recovering, served serial %v, want the third SVID's", got)
	}
}

// TestBundleReloadApplies shows that bundles are read at verification time:
// replacing a trust domain's roots refuses peers that chained to the old ones.
func TestBundleReloadApplies(t *testing.T) {
	a, b, rogue := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "b.example")
	srvCert, srvKey := a.svid(t, "/ns/ewgw/sa/ewgw")
	dir := t.TempDir()
	fc := writeIdentity(t, dir, trusting(srvCert, srvKey, a, b))
	srv, err := New(t.Context(), Config{Files: fc, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := b.svid(t, "/ns/ewgw/sa/ewgw")
	cli := newSource(t, trusting(cliCert, cliKey, a))
	srvCfg := srv.ServerTLSConfig(authz(t, []string{"b.example"}, nil, nil))
	cliCfg := clientConfig(cli, authz(t, []string{"a.example"}, nil, nil))

	checkVerdict(t, srv, cli, handshake(t, srvCfg, cliCfg), "", "")
	write(t, fc.Bundles["b.example"], rogue.bundle()) // b.example re-rooted
	srv.reload()
	checkVerdict(t, srv, cli, handshake(t, srvCfg, cliCfg), reasonBadChain, "")
}

func TestRunPollsFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newDomain(t, "a.example")
		cert1, key1 := a.svid(t, "/ns/ewgw/sa/ewgw")
		fc := writeIdentity(t, t.TempDir(), trusting(cert1, key1, a))
		s, err := New(t.Context(), Config{Files: fc, Registerer: prometheus.NewRegistry(), PollInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		cert2, key2 := a.svid(t, "/ns/ewgw/sa/rotated")
		write(t, fc.CertChain, cert2)
		write(t, fc.Key, key2)
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if got := s.ID(); got != "spiffe://a.example/ns/ewgw/sa/ewgw" {
			t.Errorf("before the poll interval ID = %s", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := s.ID(); got != "spiffe://a.example/ns/ewgw/sa/rotated" {
			t.Errorf("after the poll interval ID = %s", got)
		}
		if got := testutil.ToFloat64(s.m.rotations); got != 1 {
			t.Errorf("rotations = %v", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func TestKeyEncodings(t *testing.T) {
	a := newDomain(t, "a.example")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	tests := []struct {
		name string
		key  crypto.Signer
		pem  []byte
	}{
		{name: "pkcs8 ecdsa", key: ec, pem: mustKeyPEM(t, ec)},
		{name: "sec1 ecdsa", key: ec, pem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{name: "sec1 ecdsa after EC PARAMETERS", key: ec, pem: append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
		{name: "pkcs1 rsa", key: rk, pem: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})},
		{name: "pkcs8 rsa", key: rk, pem: mustKeyPEM(t, rk)},
		{name: "pkcs8 ed25519", key: ed, pem: mustKeyPEM(t, ed)},
	}
	cliCert, cliKey := a.svid(t, "/ns/ewgw/sa/client")
	cli := newSource(t, trusting(cliCert, cliKey, a))
	allowA := authz(t, []string{"a.example"}, nil, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := a.inter.IssueSVIDForKey("spiffe://a.example/ns/ewgw/sa/ewgw", time.Hour, tt.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			srv := newSource(t, trusting(cert, tt.pem, a))
			r := handshake(t, srv.ServerTLSConfig(allowA), clientConfig(cli, allowA))
			if checkVerdict(t, srv, cli, r, "", "") && leafSerial(t, r.client).Cmp(pemSerial(t, cert)) != 0 {
				t.Error("served a different certificate")
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	a, b := newDomain(t, "a.example"), newDomain(t, "b.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	_, otherKey := a.svid(t, "/ns/ewgw/sa/ewgw")
	good := trusting(cert, key, a)
	tests := []struct {
		name string
		cfg  func(dir string) Config
		want string
	}{
		{name: "no source", cfg: func(string) Config { return Config{} }, want: "no source"},
		{name: "both sources", cfg: func(dir string) Config {
			return Config{UseWorkloadAPI: true, Files: writeIdentity(t, dir, good)}
		}, want: "not both"},
		{name: "no paths", cfg: func(string) Config { return Config{Files: &FileConfig{}} }, want: "no certificate chain path"},
		{name: "bad trust domain", cfg: func(dir string) Config {
			fc := writeIdentity(t, dir, good)
			fc.Bundles["A.Example"] = fc.Bundles["a.example"]
			return Config{Files: fc}
		}, want: `"A.Example"`},
		{name: "missing file", cfg: func(dir string) Config {
			fc := writeIdentity(t, dir, good)
			fc.Key = filepath.Join(dir, "nope.pem")
			return Config{Files: fc}
		}, want: "nope.pem"},
		{name: "key mismatch", cfg: func(dir string) Config {
			return Config{Files: writeIdentity(t, dir, trusting(cert, otherKey, a))}
		}, want: "does not match"},
		{name: "bundle of the wrong file", cfg: func(dir string) Config {
			id := trusting(cert, key, a, b)
			id.bundles["b.example"] = []byte("not pem")
			return Config{Files: writeIdentity(t, dir, id)}
		}, want: "b.example"},
		{name: "no key block", cfg: func(dir string) Config {
			return Config{Files: writeIdentity(t, dir, trusting(cert, cert, a))}
		}, want: "no PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(t.Context(), tt.cfg(t.TempDir()))
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %s", err, tt.want)
			}
		})
	}
}

func TestExpiryGauge(t *testing.T) {
	a := newDomain(t, "a.example")
	cert, key := a.svid(t, "/ns/ewgw/sa/ewgw")
	notAfter := leafNotAfter(t, cert)
	now := notAfter.Add(-90 * time.Second)
	reg := prometheus.NewRegistry()
	s, err := New(t.Context(), Config{
		Files:      writeIdentity(t, t.TempDir(), trusting(cert, key, a)),
		Registerer: reg,
		Now:        func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := gauge(t, reg, "ewgw_identity_svid_expiry_seconds"); got != 90 {
		t.Errorf("expiry = %v, want 90", got)
	}
	now = notAfter.Add(time.Second) // read at scrape time
	if got := gauge(t, reg, "ewgw_identity_svid_expiry_seconds"); got != -1 {
		t.Errorf("expiry after NotAfter = %v, want -1", got)
	}
}

func leafNotAfter(t *testing.T, certPEM []byte) time.Time {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}

func mustKeyPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// selfSignedWithoutURI is a leaf-shaped certificate with no SPIFFE ID.
func selfSignedWithoutURI(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "no id"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mustKeyPEM(t, key)
}
