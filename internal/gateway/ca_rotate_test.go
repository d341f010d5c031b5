package gateway

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certcli"
	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/status"
)

// TestIntermediateRotationUnderTraffic: `ewgw certs rotate` renews b's
// intermediate under the same root while traffic runs both ways; b's
// gateway takes the new CA from its files and issues from it at once, and
// a, which trusts the root, accepts it without any change.
func TestIntermediateRotationUnderTraffic(t *testing.T) {
	ttl := rotationTTL(4 * time.Second)
	c := startCALab(t, ttl)
	roots, err := c.l.setup.RootFiles()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certgen.WriteFiles(c.l.dir, roots, true); err != nil { // the root key at the top, as ewgw certs leaves it
		t.Fatal(err)
	}
	oldCA := c.b.peering.ident.Expiry().CA
	stop := c.traffic(t)
	<-time.After(ttl)
	if err := certcli.Run(t.Context(), []string{"rotate", "--out", c.l.dir, "--cluster", "b", "--ca-ttl", "720h"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b issues from the renewed intermediate", func() bool {
		e := c.b.peering.ident.Expiry()
		return !e.CA.Equal(oldCA) && time.Until(e.CA) < 721*time.Hour
	})
	// A TTL on, every connection was made again with b's new chain.
	<-time.After(2 * ttl)
	stop()
	if p := c.a.peering.tun.Peers(); len(p) != 1 || !p[0].Up {
		t.Errorf("a's view of b after the rotation: %+v", p)
	}
}

// TestRootRotationUnderTraffic walks the root rotation procedure of
// certs/README.md ("Root rotation") while traffic runs both ways:
//
//  1. a new root and intermediates (ewgw certs into a new directory); every
//     bundle carries the old and the new root (overlap);
//  2. once every gateway holds both, each cluster's CA files become the
//     new intermediate's, and its gateway issues from it;
//  3. after one SVID TTL, when no connection made with an old-root chain
//     is left, the bundles drop the old root.
func TestRootRotationUnderTraffic(t *testing.T) {
	ttl := rotationTTL(4 * time.Second)
	c := startCALab(t, ttl)
	next := t.TempDir()
	if err := certcli.Run(t.Context(), []string{"--out", next, "--clusters", "a,b"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	stop := c.traffic(t)
	bundles := func(cluster string) []string {
		names, _ := filepath.Glob(filepath.Join(c.l.dir, cluster, "bundle*.pem"))
		return names
	}
	roots := func(want int) func() bool {
		return func() bool {
			for _, gw := range c.gateways() {
				for _, b := range gw.peering.ident.Expiry().Bundles {
					if b.Roots != want {
						return false
					}
				}
			}
			return true
		}
	}

	// 1. Overlap: old and new roots in every bundle.
	for _, cluster := range []string{"a", "b"} {
		for _, p := range bundles(cluster) {
			replace(t, p, append(readFile(t, p), readFile(t, filepath.Join(next, cluster, filepath.Base(p)))...))
		}
	}
	eventually(t, "every gateway holds two roots per bundle", roots(2))

	// 2. New intermediates: each gateway issues under the new root.
	for _, cluster := range []string{"a", "b"} {
		for _, f := range []string{certgen.FileCAKey, certgen.FileCertChain} {
			replace(t, filepath.Join(c.l.dir, cluster, f), readFile(t, filepath.Join(next, cluster, f)))
		}
	}
	newRoot := readFile(t, filepath.Join(next, certgen.FileRootCert))
	for name, gw := range c.gateways() {
		eventually(t, name+" issues under the new root", func() bool {
			svid := gw.peering.ident.Expiry()
			chain := readFile(t, filepath.Join(next, name, certgen.FileCACert))
			cert, _ := certgen.ParseCerts(chain)
			return svid.CA.Equal(cert[0].NotAfter)
		})
	}
	<-time.After(2 * ttl) // every connection made again with new-root chains

	// 3. The old root goes.
	for _, cluster := range []string{"a", "b"} {
		for _, p := range bundles(cluster) {
			replace(t, p, readFile(t, filepath.Join(next, cluster, filepath.Base(p))))
		}
	}
	eventually(t, "every gateway holds one root per bundle", roots(1))
	<-time.After(2 * ttl)
	stop()
	for name, gw := range c.gateways() {
		for _, b := range gw.peering.ident.Expiry().Bundles {
			if cert, _ := certgen.ParseCerts(newRoot); !b.NotAfter.Equal(cert[0].NotAfter) {
				t.Errorf("gateway %s: bundle %s is not the new root", name, b.TrustDomain)
			}
		}
	}
	if p := c.a.peering.tun.Peers(); len(p) != 1 || !p[0].Up {
		t.Errorf("a's view of b after the rotation: %+v", p)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPeerWithoutNewRootRefuses: a rotates its root (overlap, then its new
// intermediate) but b never receives the new root. The overlap alone
// changes nothing for b; once a presents SVIDs under the new root, b
// refuses a with reason bad_chain, in its metrics and in the last error
// `ewgw status` shows for a.
func TestPeerWithoutNewRootRefuses(t *testing.T) {
	const ttl = 4 * time.Second
	l := newTestLab(t, "a", "b")
	l.caTTL = map[string]time.Duration{"a": ttl, "b": ttl}
	a, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b"}})
	b, _ := startLab(t, l, "b", "127.0.0.1:0", nil, []LabPeer{{Cluster: "a", Addr: a.Addr()}})
	peerA := func() status.Peer { return b.report("").Peers[0] }
	eventually(t, "b peers with a", func() bool { return peerA().Up })
	next := t.TempDir()
	if err := certcli.Run(t.Context(), []string{"--out", next, "--clusters", "a,b"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(l.dir, "a", "bundle*.pem"))
	for _, p := range paths {
		replace(t, p, append(readFile(t, p), readFile(t, filepath.Join(next, "a", filepath.Base(p)))...))
	}
	eventually(t, "a holds both roots", func() bool { return a.peering.ident.Expiry().Bundles[0].Roots == 2 })
	<-time.After(2 * ttl) // connections made again during the overlap
	if p := peerA(); !p.Up || p.LastError != "" {
		t.Fatalf("during the overlap b sees a as %+v", p)
	}

	for _, f := range []string{certgen.FileCAKey, certgen.FileCertChain} {
		replace(t, filepath.Join(l.dir, "a", f), readFile(t, filepath.Join(next, "a", f)))
	}
	eventually(t, "b refuses a's new chain", func() bool { return strings.Contains(peerA().LastError, "bad_chain") })
	t.Logf("b's last error for a: %s", peerA().LastError)
	if n := metric(t, b, "ewgw_identity_peer_rejections_total", "reason", "bad_chain"); n < 1 {
		t.Errorf("b counted %v bad_chain rejections", n)
	}
}
