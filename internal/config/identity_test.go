package config

import (
	"strings"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
)

func TestIdentityCA(t *testing.T) {
	const base = `
cluster: a
discovery: {file: s.yaml}
peering:
  allow: {trust_domains: [b.example]}
`
	tests := []struct {
		name     string
		identity string
		wantTTL  time.Duration
		err      string
	}{
		{name: "defaults", identity: "{ca: {cert_chain: ca/cert-chain.pem, key: ca/ca-key.pem, bundles: {a.example: b.pem}}}",
			wantTTL: certgen.DefaultSVIDTTL},
		{name: "ttl and id", identity: "{ca: {cert_chain: c.pem, key: k.pem, bundles: {a.example: b.pem}, ttl: 30s, id: spiffe://a.example/gw}}",
			wantTTL: 30 * time.Second},
		{name: "ttl below a second", identity: "{ca: {cert_chain: c.pem, key: k.pem, bundles: {a.example: b.pem}, ttl: 500ms}}",
			err: "peering.identity.ca.ttl: 500ms is below the 1s minimum"},
		{name: "bad id", identity: "{ca: {cert_chain: c.pem, key: k.pem, bundles: {a.example: b.pem}, id: a.example/gw}}",
			err: "peering.identity.ca.id"},
		{name: "no key, no bundles", identity: "{ca: {cert_chain: c.pem}}",
			err: "peering.identity.ca: cert_chain and key are required\npeering.identity.ca.bundles"},
		{name: "ca and files", identity: "{ca: {cert_chain: c.pem, key: k.pem}, files: {cert_chain: s.pem, key: k.pem}}",
			err: "peering.identity: set one of workload_api, files and ca, not both"},
		{name: "none", identity: "{}", err: "peering.identity: set one of workload_api, files and ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base + "  identity: " + tt.identity + "\n"))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Peering.Identity.CA.TTL.D(); got != tt.wantTTL {
				t.Errorf("ttl %v, want %v", got, tt.wantTTL)
			}
		})
	}
}
