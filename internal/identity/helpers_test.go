package identity

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// domain is a trust domain's CA: a root and a cluster intermediate.
type domain struct {
	td      string
	inter   *certgen.CA
	rootKey crypto.Signer
}

func newDomain(t *testing.T, td string) *domain {
	t.Helper()
	root, err := certgen.NewRoot(certgen.RootOptions{CommonName: "root " + td, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(certgen.IntermediateOptions{Cluster: td, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	return &domain{td: td, inter: inter, rootKey: root.Key}
}

// svid mints an SVID for path in the domain, valid for an hour.
func (d *domain) svid(t *testing.T, path string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := d.inter.IssueSVID("spiffe://"+d.td+path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func (d *domain) bundle() []byte { return d.inter.RootPEM() }

// identity is what one gateway's files hold.
type identity struct {
	cert, key []byte
	bundles   map[string][]byte // trust domain -> PEM
}

func trusting(cert, key []byte, ds ...*domain) identity {
	id := identity{cert: cert, key: key, bundles: map[string][]byte{}}
	for _, d := range ds {
		id.bundles[d.td] = d.bundle()
	}
	return id
}

// writeIdentity writes id as plain files in dir and returns their config.
func writeIdentity(t *testing.T, dir string, id identity) *FileConfig {
	t.Helper()
	fc := &FileConfig{CertChain: filepath.Join(dir, "svid.pem"), Key: filepath.Join(dir, "svid-key.pem"), Bundles: map[string]string{}}
	write(t, fc.CertChain, id.cert)
	write(t, fc.Key, id.key)
	for td, b := range id.bundles {
		fc.Bundles[td] = filepath.Join(dir, "bundle-"+td+".pem")
		write(t, fc.Bundles[td], b)
	}
	return fc
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newSource loads id from files into a Source with its own registry.
func newSource(t *testing.T, id identity) *Source {
	t.Helper()
	s, err := New(t.Context(), Config{Files: writeIdentity(t, t.TempDir(), id), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func authz(t *testing.T, domains, ids, patterns []string) *Authorizer {
	t.Helper()
	a, err := ParseAuthorizer(domains, ids, patterns)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// result is the outcome of one TLS connection over loopback TCP.
type result struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs one TLS connection over real TCP on 127.0.0.1: the server
// handshakes, writes "ok" and closes; the client handshakes and reads to the
// end. Reading matters in TLS 1.3: the server checks the client certificate
// after the client's handshake has returned, and a refusal only shows on the
// client's next read (as do session tickets).
func handshake(t *testing.T, srv, cli *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type served struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan served, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- served{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			done <- served{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		tc.Close()
		done <- served{err: err, cs: tc.ConnectionState()}
	}()

	var r result
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	if r.clientErr = tc.HandshakeContext(t.Context()); r.clientErr == nil {
		var got []byte
		got, r.clientErr = io.ReadAll(tc)
		if r.clientErr == nil && string(got) != "ok" {
			r.clientErr = errors.New("client read " + string(got))
		}
		r.client = tc.ConnectionState()
	}
	c.Close() // unblocks a server still waiting for the client's certificate
	s := <-done
	r.serverErr, r.server = s.err, s.cs
	return r
}

func clientConfig(s *Source, a *Authorizer) *tls.Config {
	cfg := s.ClientTLSConfig(a)
	cfg.ServerName = "peer" // the session cache key
	return cfg
}

func rejections(s *Source, reason string) float64 {
	return testutil.ToFloat64(s.m.rejections.WithLabelValues(reason))
}

func leafSerial(t *testing.T, cs tls.ConnectionState) *big.Int {
	t.Helper()
	if len(cs.PeerCertificates) == 0 {
		t.Fatal("no peer certificate")
	}
	return cs.PeerCertificates[0].SerialNumber
}

func pemSerial(t *testing.T, certPEM []byte) *big.Int {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}
