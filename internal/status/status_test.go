package status

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLeft(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "EXPIRED"},
		{42*time.Second + 300*time.Millisecond, "42s"},
		{3*time.Hour + 7*time.Minute, "3h07m"},
		{47 * time.Hour, "47h00m"},
		{400 * 24 * time.Hour, "400d"},
	}
	for _, tt := range tests {
		if got := Left(tt.d); got != tt.want {
			t.Errorf("Left(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestPrintIdentity: the identity section lists the SVID, the CA and each
// bundle with its expiry and the time left, and marks what has expired.
func TestPrintIdentity(t *testing.T) {
	now := time.Now()
	r := Report{Cluster: "a", Identity: &Identity{
		ID:           "spiffe://a.example/ns/ewgw/sa/ewgw",
		SVIDNotAfter: now.Add(12*time.Hour + 30*time.Minute),
		CANotAfter:   now.Add(200 * 24 * time.Hour),
		Bundles: []Bundle{
			{TrustDomain: "a.example", NotAfter: now.Add(3000 * 24 * time.Hour), Roots: 1},
			{TrustDomain: "b.example", NotAfter: now.Add(-time.Minute), Roots: 2},
		},
	}}
	var out bytes.Buffer
	if err := Print(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"IDENTITY spiffe://a.example/ns/ewgw/sa/ewgw",
		"svid ", "12h29m", "ca ", "199d", "bundle a.example ", "2999d", "bundle b.example (2 roots)", "EXPIRED",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPrintTransport: each peer's row says what carries its connections.
func TestPrintTransport(t *testing.T) {
	r := Report{Cluster: "a", Peers: []Peer{
		{Name: "b", Up: true, Conns: 8},
		{Name: "c", Up: true, Conns: 8, TCPConns: 8, LastError: "dial peer c over QUIC: timeout"},
		{Name: "d", Up: true, Conns: 9, TCPConns: 1},
	}}
	var out bytes.Buffer
	if err := Print(&out, r); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = line
		}
	}
	for peer, want := range map[string]string{"b": " quic ", "c": " tcp ", "d": " quic+tcp(1) "} {
		if !strings.Contains(rows[peer], want) {
			t.Errorf("row of %s lacks %q:\n%s", peer, want, out.String())
		}
	}
}
