package gateway

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/testbed"
)

// TestRotationMidTraffic rotates cluster-b's SVID files on disk while a
// tunnelled connection is open: the connection carries on, and a new QUIC
// handshake gets the new SVID.
func TestRotationMidTraffic(t *testing.T) {
	l := newTestLab(t, "a", "b")
	svc := startService(t, newCA(t), testbed.ServeBulk, "")
	b, _ := startLab(t, l, "b", "127.0.0.1:0", exported(svc.backend.Addr()), []LabPeer{{Cluster: "a"}})
	a, stopA := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a, "b")
	before := a.peering.tun.Peers()[0].CertNotAfter

	// A live tunnelled connection: its TLS handshake with the service is
	// done, its payload not yet sent.
	raw, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	live := tls.Client(raw, svc.client)
	if err := live.Handshake(); err != nil {
		t.Fatal(err)
	}

	cb, err := l.cluster("b")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := cb.Intermediate.IssueSVID(cb.ID, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.dir, "b")
	replace(t, filepath.Join(dir, certgen.FileSVIDKey), key)
	replace(t, filepath.Join(dir, certgen.FileSVID), cert)
	waitMetric(t, b, "ewgw_identity_rotations_total", 1)

	if err := testbed.BulkTLS(live, raw, 1<<20, 1<<20); err != nil {
		t.Fatalf("live connection across the rotation: %v", err)
	}
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	a2, _ := startLab(t, l, "a", "127.0.0.1:0", nil, []LabPeer{{Cluster: "b", Addr: b.Addr()}})
	waitPeers(t, a2, "b")
	after := a2.peering.tun.Peers()[0].CertNotAfter
	if after.Sub(before) < 47*time.Hour {
		t.Fatalf("new handshake saw a certificate expiring %v, the old one expired %v: not the rotated SVID", after, before)
	}
	c, err := net.Dial("tcp", a2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := testbed.Bulk(c, svc.client, 1<<20, 1<<20); err != nil {
		t.Fatalf("new connection after the rotation: %v", err)
	}
}

// replace writes data to path atomically (write and rename), as secret
// volume updaters do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitMetric waits until gw's metric reaches at least want. The gateway
// offers no event for a file reload, so this polls the registry, bounded
// by the test's deadline.
func waitMetric(t *testing.T, gw *Gateway, name string, want float64, labels ...string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for metric(t, gw, name, labels...) < want {
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("%s never reached %v", name, want)
		}
	}
}
