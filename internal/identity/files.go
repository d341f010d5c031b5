package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// fileSource is the file-backed x509svid.Source and x509bundle.Source. It
// notices changes by hashing file contents, not by watching inodes or
// modification times: Kubernetes updates Secret, ConfigMap and CSI volumes by
// atomically re-pointing a "..data" symlink (kubernetes/kubernetes#111947),
// and os.ReadFile through the stable "name -> ..data/name" link simply sees
// the new content.
type fileSource struct {
	cfg     FileConfig
	domains []spiffeid.TrustDomain // sorted, so the read order is stable
	paths   map[spiffeid.TrustDomain]string

	// issuer, when set, makes this the CA source: CertChain and Key are a
	// CA's, and the SVID is issued from it.
	issuer *issuer

	cur atomic.Pointer[material]
	// fed holds the bundles peers announced (federate.go).
	fed federation
	// last is the hash of the files as last examined, good or bad; only the
	// goroutine running Run touches it after New.
	last [sha256.Size]byte
}

// material is one consistent set of identity material.
type material struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set
	// ca is the CA the SVID was issued from, and renewAt when to issue the
	// next; CA source only.
	ca      *certgen.CA
	renewAt time.Time
}

func newFileSource(cfg FileConfig) (*fileSource, error) {
	var errs []error
	if cfg.CertChain == "" {
		errs = append(errs, errors.New("files: no certificate chain path"))
	}
	if cfg.Key == "" {
		errs = append(errs, errors.New("files: no key path"))
	}
	if len(cfg.Bundles) == 0 {
		errs = append(errs, errors.New("files: no trust bundle paths"))
	}
	f := &fileSource{cfg: cfg, paths: map[spiffeid.TrustDomain]string{}}
	for name, path := range cfg.Bundles {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("files: bundle trust domain %q: %w", name, err))
			continue
		}
		if _, dup := f.paths[td]; dup {
			errs = append(errs, fmt.Errorf("files: trust domain %s has two bundle files", td))
		}
		f.paths[td] = path
		f.domains = append(f.domains, td)
	}
	slices.SortFunc(f.domains, func(a, b spiffeid.TrustDomain) int { return a.Compare(b) })
	return f, errors.Join(errs...)
}

// GetX509SVID implements x509svid.Source.
func (f *fileSource) GetX509SVID() (*x509svid.SVID, error) {
	return f.cur.Load().svid, nil
}

// trustDomains returns the trust domains the files hold bundles for.
func (f *fileSource) trustDomains() []spiffeid.TrustDomain { return f.domains }

// GetX509BundleForTrustDomain implements x509bundle.Source.
// A bundle a peer announced for td replaces the configured one while that
// is the one it was taken over (federate.go).
func (f *fileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	conf, err := f.cur.Load().bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, err
	}
	if b := f.fed.get(td, conf); b != nil {
		return b, nil
	}
	return conf, nil
}

// load reads and parses every file, and installs the result. changed is
// false when the files are byte for byte what was last examined, in which
// case nothing is parsed and err is nil.
func (f *fileSource) load() (changed bool, err error) {
	contents, sum, err := f.read()
	if sum == f.last {
		return false, nil
	}
	f.last = sum
	if err != nil {
		return true, err
	}
	m, err := f.parse(contents)
	if err != nil {
		return true, err
	}
	f.cur.Store(m)
	return true, nil
}

// read returns the contents of the chain, the key and the bundles in
// f.domains order, and a hash over all of them. A read error goes into the
// hash too, so a missing file is reported once, not on every poll.
func (f *fileSource) read() ([][]byte, [sha256.Size]byte, error) {
	paths := []string{f.cfg.CertChain, f.cfg.Key}
	for _, td := range f.domains {
		paths = append(paths, f.paths[td])
	}
	h := sha256.New()
	contents := make([][]byte, len(paths))
	var errs []error
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read: %w", err))
			b = []byte(err.Error())
		}
		contents[i] = b
		fmt.Fprintf(h, "%d:%d:", i, len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return contents, sum, errors.Join(errs...)
}

func (f *fileSource) parse(contents [][]byte) (*material, error) {
	m, err := f.parseIdentity(contents[0], contents[1])
	if err != nil {
		return nil, err
	}
	set := x509bundle.NewSet()
	for i, td := range f.domains {
		b, err := x509bundle.Parse(td, contents[2+i])
		if err == nil && b.Empty() {
			err = errors.New("no certificates")
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s for %s: %w", f.paths[td], td, err)
		}
		set.Add(b)
	}
	m.bundles = set
	return m, nil
}

// parseIdentity reads the SVID and its key, or with an issuer the CA and
// its key, issuing an SVID from the CA unless it is the one in use.
func (f *fileSource) parseIdentity(chain, key []byte) (*material, error) {
	if f.issuer != nil {
		return f.issuer.load(chain, key, f.cur.Load())
	}
	svid, err := parseSVID(chain, key)
	if err != nil {
		return nil, fmt.Errorf("svid %s, key %s: %w", f.cfg.CertChain, f.cfg.Key, err)
	}
	return &material{svid: svid}, nil
}

// parseSVID parses a PEM chain and key. x509svid.Parse accepts PKCS#8 only,
// while cert-manager writes PKCS#1 or SEC1 by default, so the key is
// re-encoded to PKCS#8 and handed to x509svid.ParseRaw, which still checks
// the SVID's shape (X509-SVID §4–5) and that the key matches the leaf.
func parseSVID(chainPEM, keyPEM []byte) (*x509svid.SVID, error) {
	var chain []byte
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes...)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("no CERTIFICATE block in the chain file")
	}
	key, err := pkcs8(keyPEM)
	if err != nil {
		return nil, err
	}
	return x509svid.ParseRaw(chain, key)
}

// pkcs8 returns the first private key in keyPEM as PKCS#8 DER.
func pkcs8(keyPEM []byte) ([]byte, error) {
	key, err := certgen.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	return x509.MarshalPKCS8PrivateKey(key)
}

// reload is one poll: a change is installed, or a bad one logged and
// counted while the last good material stays. It reports whether new
// material was installed.
func (s *Source) reload() bool {
	before := s.files.cur.Load()
	changed, err := s.files.load()
	after := s.files.cur.Load()
	switch {
	case !changed:
		return false
	case err != nil:
		s.m.failures.Inc()
		s.log.Warn("identity reload failed, keeping last good", "err", err)
		return false
	case sameMaterial(before, after):
		// Same certificates in new bytes (e.g. re-encoded); nothing to do.
		return false
	}
	s.m.rotations.Inc()
	s.log.Info("identity reloaded", "spiffe_id", s.ID(), "not_after", s.notAfter())
	if after.ca != before.ca {
		s.log.Info("ca reloaded, svid issued from it", "ca", after.ca.Cert.Subject.String(), "ca_not_after", caNotAfter(after.ca))
		s.warnCA()
	}
	return true
}

func sameMaterial(a, b *material) bool {
	if !slices.EqualFunc(a.svid.Certificates, b.svid.Certificates, (*x509.Certificate).Equal) {
		return false
	}
	if a.bundles.Len() != b.bundles.Len() {
		return false
	}
	for _, x := range a.bundles.Bundles() {
		y, ok := b.bundles.Get(x.TrustDomain())
		if !ok || !x.Equal(y) {
			return false
		}
	}
	return true
}
