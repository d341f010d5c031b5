package gateway

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certcli"
	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/identity"
	"github.com/ewgw/ewgw/internal/status"
)

// TestFederatedRootRotationUnderTraffic: cluster b rotates its root with
// overlap while traffic runs both ways, editing only its own files:
//
//  1. b's own bundle carries the old and the new root;
//  2. b's CA files become the new root's intermediate, and b issues from it;
//  3. after one SVID TTL, b's own bundle drops the old root.
//
// a, which federates, learns each of b's bundles over the peering
// connection: none of a's files changes and a does not restart, no
// connection is refused or revoked on either side, and no exchange is
// failed or corrupted (checkTraffic, SHA-256 both ways).
func TestFederatedRootRotationUnderTraffic(t *testing.T) {
	const ttl = 4 * time.Second
	l := newTestLab(t, "a", "b")
	l.federate = map[string]bool{"a": true, "b": true}
	c := startCALabOn(t, l, ttl)
	next := t.TempDir()
	if err := certcli.Run(t.Context(), []string{"--out", next, "--clusters", "a,b"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	aFiles, _ := filepath.Glob(filepath.Join(l.dir, "a", "*.pem"))
	before := map[string][]byte{}
	for _, p := range aFiles {
		before[p] = readFile(t, p)
	}
	const bTD = "b.ewgw.local"
	own := filepath.Join(l.dir, "b", certgen.BundleFile(bTD, bTD))
	newOwn := readFile(t, filepath.Join(next, "b", certgen.BundleFile(bTD, bTD)))
	aSees := func(roots int) func() bool {
		return func() bool {
			b := bundleOf(c.a.peering.ident.Expiry(), bTD)
			return b.Federated && b.Roots == roots
		}
	}
	stop := c.traffic(t)

	// 1. Overlap: only b's own bundle changes.
	replace(t, own, append(readFile(t, own), newOwn...))
	eventually(t, "a takes b's bundle of two roots from b", aSees(2))

	// 2. b issues under the new root; a verifies it with the federated bundle.
	for _, f := range []string{certgen.FileCAKey, certgen.FileCertChain} {
		replace(t, filepath.Join(l.dir, "b", f), readFile(t, filepath.Join(next, "b", f)))
	}
	newCA, _ := certgen.ParseCerts(readFile(t, filepath.Join(next, "b", certgen.FileCACert)))
	eventually(t, "b issues under the new root", func() bool {
		return c.b.peering.ident.Expiry().CA.Equal(newCA[0].NotAfter)
	})
	<-time.After(2 * ttl) // every connection made again with new-root chains

	// 3. The old root goes from b's own bundle, and from a's view of it.
	replace(t, own, newOwn)
	eventually(t, "a takes b's bundle of the new root alone", aSees(1))
	newRoot, _ := certgen.ParseCerts(newOwn)
	if b := bundleOf(c.a.peering.ident.Expiry(), bTD); !b.NotAfter.Equal(newRoot[0].NotAfter) {
		t.Errorf("a's bundle for b expires %v, not with the new root", b.NotAfter)
	}
	<-time.After(2 * ttl)
	stop()

	for p, b := range before {
		if !bytes.Equal(readFile(t, p), b) {
			t.Errorf("a's file %s changed", p)
		}
	}
	if p := c.a.peering.tun.Peers(); len(p) != 1 || !p[0].Up || p[0].LastError != nil {
		t.Errorf("a's view of b after the rotation: %+v", p)
	}
	for name, gw := range c.gateways() {
		for _, reason := range []string{"revoked", "bundle_refused", "bundle_domain", "bad_bundle", "over_bundle"} {
			if n := metric(t, gw, "ewgw_tunnel_peer_refusals_total", "reason", reason); n != 0 {
				t.Errorf("%s: %v refusals for %s", name, n, reason)
			}
		}
	}
	if n := metric(t, c.a, "ewgw_identity_federated_bundles_total"); n != 2 {
		t.Errorf("a took %v federated bundles, want 2", n)
	}
	if r := c.a.report(""); r.Identity == nil || !bundleStatusFederated(r.Identity.Bundles, bTD) {
		t.Errorf("a's status does not show b's bundle as federated: %+v", r.Identity.Bundles)
	}
}

// bundleOf returns td's bundle in e; zero if there is none.
func bundleOf(e identity.Expiry, td string) identity.BundleExpiry {
	for _, b := range e.Bundles {
		if b.TrustDomain == td {
			return b
		}
	}
	return identity.BundleExpiry{}
}

// bundleStatusFederated reports whether the status lists td's bundle as
// federated.
func bundleStatusFederated(bs []status.Bundle, td string) bool {
	for _, b := range bs {
		if b.TrustDomain == td {
			return b.Federated
		}
	}
	return false
}
