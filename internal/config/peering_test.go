package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ewgw/ewgw/internal/tunnel/param"
)

func TestPeeringBudgets(t *testing.T) {
	base := `
cluster: a
discovery: {file: s.yaml}
peering:
  identity: {files: {cert_chain: svid.pem, key: key.pem, bundles: {b.example: b.pem}}}
  allow: {trust_domains: [b.example]}
  peers: [{name: b, region: eu-west, addrs: ["198.51.100.7:15443"], id: b.example}]
`
	tests := []struct {
		name  string
		extra string
		want  Peering // only the budget fields and the peer region are compared
		err   string
	}{
		{name: "defaults", want: Peering{MaxImportedServices: param.DefaultMaxImportedServices,
			MaxImportedBytes: param.DefaultMaxImportedBytes, MaxStreamsPerConn: param.DefaultMaxIncomingStreams,
			MaxConnsPerPeerIn: 2 * param.DefaultConnsPerPeer}},
		{name: "set", extra: "  max_imported_services: 10\n  max_imported_bytes: 1000\n  max_streams_per_conn: 64\n  conns_per_peer: 2\n",
			want: Peering{MaxImportedServices: 10, MaxImportedBytes: 1000, MaxStreamsPerConn: 64, MaxConnsPerPeerIn: 4}},
		{name: "explicit conns", extra: "  max_conns_per_peer_in: 3\n",
			want: Peering{MaxImportedServices: param.DefaultMaxImportedServices,
				MaxImportedBytes: param.DefaultMaxImportedBytes, MaxStreamsPerConn: param.DefaultMaxIncomingStreams,
				MaxConnsPerPeerIn: 3}},
		{name: "negative", extra: "  max_imported_services: -1\n", err: "max_imported_services"},
		{name: "streams over quic's range", extra: "  max_streams_per_conn: 100000\n", err: "max_streams_per_conn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base + tt.extra))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := c.Peering
			got := Peering{MaxImportedServices: p.MaxImportedServices, MaxImportedBytes: p.MaxImportedBytes,
				MaxStreamsPerConn: p.MaxStreamsPerConn, MaxConnsPerPeerIn: p.MaxConnsPerPeerIn}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("budgets %+v, want %+v", got, tt.want)
			}
			if r := p.Peers[0].Region; r != "eu-west" {
				t.Errorf("peer region %q", r)
			}
		})
	}
}

func TestPeeringFederate(t *testing.T) {
	tests := []struct {
		name     string
		identity string
		extra    string
		want     bool
		err      string
	}{
		{name: "off by default", identity: "{files: {cert_chain: svid.pem, key: key.pem, bundles: {b.example: b.pem}}}"},
		{name: "files", identity: "{files: {cert_chain: svid.pem, key: key.pem, bundles: {b.example: b.pem}}}", extra: "  federate: true\n", want: true},
		{name: "ca", identity: "{ca: {cert_chain: c.pem, key: k.pem, bundles: {b.example: b.pem}}}", extra: "  federate: true\n", want: true},
		{name: "workload api", identity: "{workload_api: {}}", extra: "  federate: true\n", err: "peering.federate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("cluster: a\ndiscovery: {file: s.yaml}\npeering:\n  identity: " + tt.identity +
				"\n  allow: {trust_domains: [b.example]}\n" + tt.extra))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Peering.Federate != tt.want {
				t.Errorf("federate %v, want %v", c.Peering.Federate, tt.want)
			}
		})
	}
}
