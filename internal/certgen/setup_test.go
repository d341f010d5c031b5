package certgen

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	tests := []struct {
		name        string
		plan        Plan
		wantTDs     []string
		sharedRoot  bool
		wantBundles map[string][]string // cluster -> bundle files
	}{
		{
			name:       "shared root, trust domain per cluster",
			plan:       Plan{Clusters: []string{"a", "b"}},
			wantTDs:    []string{"a.ewgw.local", "b.ewgw.local"},
			sharedRoot: true,
			wantBundles: map[string][]string{
				"a": {"bundle.pem", "bundle-b.ewgw.local.pem"},
				"b": {"bundle.pem", "bundle-a.ewgw.local.pem"},
			},
		},
		{
			name:        "shared root, shared trust domain",
			plan:        Plan{Clusters: []string{"a", "b"}, TrustDomain: "mesh.example"},
			wantTDs:     []string{"mesh.example", "mesh.example"},
			sharedRoot:  true,
			wantBundles: map[string][]string{"a": {"bundle.pem"}, "b": {"bundle.pem"}},
		},
		{
			name:       "federated",
			plan:       Plan{Clusters: []string{"east", "west", "north"}, TrustDomainTemplate: "{cluster}.corp", Federated: true},
			wantTDs:    []string{"east.corp", "west.corp", "north.corp"},
			sharedRoot: false,
			wantBundles: map[string][]string{
				"east":  {"bundle.pem", "bundle-north.corp.pem", "bundle-west.corp.pem"},
				"west":  {"bundle.pem", "bundle-east.corp.pem", "bundle-north.corp.pem"},
				"north": {"bundle.pem", "bundle-east.corp.pem", "bundle-west.corp.pem"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Generate(tt.plan)
			if err != nil {
				t.Fatal(err)
			}
			if (s.Shared != nil) != tt.sharedRoot {
				t.Errorf("shared root = %v, want %v", s.Shared != nil, tt.sharedRoot)
			}
			for i, c := range s.Clusters {
				if c.TrustDomain != tt.wantTDs[i] || c.ID != "spiffe://"+tt.wantTDs[i]+"/ns/ewgw/sa/ewgw" {
					t.Errorf("cluster %s: td %q id %q", c.Name, c.TrustDomain, c.ID)
				}
				var names []string
				for _, f := range c.IdentityFiles() {
					if strings.HasPrefix(f.Name, "bundle") {
						names = append(names, f.Name)
						// Each bundle file holds exactly the root of its domain's cluster.
						td := strings.TrimSuffix(strings.TrimPrefix(f.Name, "bundle-"), ".pem")
						if f.Name == FileBundle {
							td = c.TrustDomain
						}
						if !bytes.Equal(f.Data, rootOf(s, td).RootPEM()) {
							t.Errorf("cluster %s: %s is not the root of %s", c.Name, f.Name, td)
						}
					}
				}
				if !slices.Equal(names, tt.wantBundles[c.Name]) {
					t.Errorf("cluster %s bundle files = %v, want %v", c.Name, names, tt.wantBundles[c.Name])
				}
				leaf := parseCerts(t, c.SVID)
				if len(leaf) != 2 || !leaf[1].Equal(c.Intermediate.Cert) {
					t.Errorf("cluster %s: svid.pem is not leaf + intermediate", c.Name)
				}
			}
		})
	}
}

func rootOf(s *Setup, td string) *CA {
	for _, c := range s.Clusters {
		if c.TrustDomain == td {
			return c.Root
		}
	}
	return nil
}

func TestGenerateBadPlan(t *testing.T) {
	tests := []struct {
		name string
		plan Plan
		want string
	}{
		{name: "no clusters", plan: Plan{}, want: "no clusters"},
		{name: "bad cluster name", plan: Plan{Clusters: []string{"Cluster_A"}}, want: "DNS label"},
		{name: "duplicate cluster", plan: Plan{Clusters: []string{"a", "a"}}, want: "listed twice"},
		{name: "template without placeholder", plan: Plan{Clusters: []string{"a"}, TrustDomainTemplate: "x.local"}, want: "lacks {cluster}"},
		{name: "federated shared domain", plan: Plan{Clusters: []string{"a", "b"}, TrustDomain: "x.local", Federated: true}, want: "federated"},
		{name: "bad trust domain", plan: Plan{Clusters: []string{"a"}, TrustDomain: "X.local"}, want: "not allowed"},
		{name: "bad namespace", plan: Plan{Clusters: []string{"a"}, Namespace: "a/b"}, want: "path segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(tt.plan)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Generate: err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestClusterFilesAndSecrets(t *testing.T) {
	s, err := Generate(Plan{Clusters: []string{"a", "b"}, Namespace: "gw"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := s.Clusters[0].Files("gw")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]File{}
	for _, f := range files {
		byName[f.Name] = f
	}
	for _, name := range []string{"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem", "svid.pem", "svid-key.pem", "bundle.pem", "bundle-b.ewgw.local.pem", "cacerts.yaml", "ewgw-ca.yaml", "ewgw-identity.yaml"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("missing %s", name)
		}
	}
	chain := parseCerts(t, byName["cert-chain.pem"].Data)
	if len(chain) != 2 || !chain[0].Equal(s.Clusters[0].Intermediate.Cert) || !chain[1].Equal(s.Shared.Cert) {
		t.Error("cert-chain.pem is not intermediate + root")
	}
	secret := string(byName["ewgw-identity.yaml"].Data)
	for _, want := range []string{"name: ewgw-identity\n", "namespace: gw\n",
		"  svid.pem: " + base64.StdEncoding.EncodeToString(byName["svid.pem"].Data) + "\n",
		"  bundle-b.ewgw.local.pem: "} {
		if !strings.Contains(secret, want) {
			t.Errorf("ewgw-identity.yaml lacks %q:\n%s", want, secret)
		}
	}
	cacerts := string(byName["cacerts.yaml"].Data)
	if !strings.Contains(cacerts, "namespace: istio-system\n") || !strings.Contains(cacerts, "  ca-key.pem: ") {
		t.Errorf("cacerts.yaml:\n%s", cacerts)
	}
	// The CA key reaches the gateway in ewgw-ca, never in ewgw-identity.
	ca := string(byName["ewgw-ca.yaml"].Data)
	if !strings.Contains(ca, "name: ewgw-ca\n") || !strings.Contains(ca, "namespace: gw\n") || !strings.Contains(ca, "  ca-key.pem: ") || !strings.Contains(ca, "  cert-chain.pem: ") {
		t.Errorf("ewgw-ca.yaml:\n%s", ca)
	}
	if strings.Contains(secret, "ca-key.pem") {
		t.Error("ewgw-identity.yaml holds the CA key")
	}
}
