package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/route"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte("cluster: a\ndiscovery: {file: s.yaml}\n"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, ":15443"},
		{"admin", c.Admin.Listen, "127.0.0.1:15000"},
		{"log format", c.Log.Format, "json"},
		{"hello max", c.Hello.MaxSize, 16384},
		{"hello timeout", c.Hello.Timeout.D(), 5 * time.Second},
		{"connect timeout", c.Upstream.ConnectTimeout.D(), 3 * time.Second},
		{"drain", c.DrainTimeout.D(), 30 * time.Second},
		{"procs", c.Procs, "adaptive"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := `
listen: "nonsense"
log: {level: loud, format: xml}
procs: 4
hello: {max_size: 10, timeout: -1s}
names:
  hosts:
    - {match: "a.*.com", service: "noslash"}
`
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("Parse accepted a bad config")
	}
	for _, want := range []string{
		"cluster: required", "listen:", "log.level", "log.format", `procs: "4"`, "hello.max_size",
		"hello.timeout", "names.hosts[0].service", "a.*.com", "discovery: set file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	_, err := Parse([]byte("cluster: a\ndiscovery: {file: s}\nlisten_addr: x\n"))
	if err == nil || !strings.Contains(err.Error(), "listen_addr") {
		t.Fatalf("Parse = %v, want an unknown-field error naming listen_addr", err)
	}
	_, err = Parse([]byte("cluster: a\nhello: {timeout: 5 seconds}\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Parse = %v, want a duration error with its line", err)
	}
}

func TestParseServices(t *testing.T) {
	svcs, err := ParseServices([]byte(`
services:
  - namespace: default
    name: web
    exported: true
    ports:
      - port: 443
        endpoints: ["10.0.0.1:8443", "[fd00::1]:8443"]
      - port: 80
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || !svcs[0].Exported || len(svcs[0].Ports) != 2 {
		t.Fatalf("services = %+v", svcs)
	}
	if got := svcs[0].Ports[0].Endpoints[1]; got != netip.MustParseAddrPort("[fd00::1]:8443") {
		t.Fatalf("endpoint = %v", got)
	}
}

func TestParseServicesProblems(t *testing.T) {
	_, err := ParseServices([]byte(`
services:
  - {namespace: default, name: web, ports: [{port: 443, endpoints: ["nope", "10.0.0.1:0"]}, {port: 443}]}
  - {namespace: default, name: web, ports: []}
  - {name: x, ports: [{port: 0}]}
`))
	if err == nil {
		t.Fatal("ParseServices accepted bad services")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 7 {
		t.Fatalf("want 7 problems, got: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ewgw.yaml")
	if err := os.WriteFile(p, []byte("cluster: a\ndiscovery: {file: s.yaml}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestPeering(t *testing.T) {
	good := `
cluster: a
discovery: {file: s.yaml}
peering:
  identity: {files: {cert_chain: svid.pem, key: key.pem, bundles: {b.example: b.pem}}}
  allow: {trust_domains: [b.example]}
  peers: [{name: b, addrs: ["198.51.100.7:15443"], id: b.example}]
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Peering; p.ConnsPerPeer != 8 || p.KeepAlive.D() != 10*time.Second || p.IdleTimeout.D() != 30*time.Second {
		t.Fatalf("peering defaults = %+v", p)
	}
	bad := `
cluster: a
discovery: {file: s.yaml}
peering:
  identity: {files: {cert_chain: svid.pem}, workload_api: {}}
  peers:
    - {name: b, addrs: ["nope"], id: "b/x"}
    - {name: b}
  keepalive: 1m
`
	_, err = Parse([]byte(bad))
	if err == nil {
		t.Fatal("Parse accepted a bad peering section")
	}
	for _, want := range []string{
		"peering.identity: set one of workload_api, files and ca, not both", "peering.allow", "peers[0].addrs[0]",
		"peers[0].id", `peers[1].name: duplicate "b"`, "peers[1].id", "keepalive",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestDiscoveryAndPolicy(t *testing.T) {
	good := `
cluster: sh1
region: cn-shanghai
discovery:
  kubernetes: {namespace: shop}
  import: {suffix: mirror, addresses: ["10.1.2.3", "fd00::3"]}
policy:
  mode: distribute
  distribute: {cn-shanghai: {cn-shanghai: 90, cn-hangzhou: 10}}
  failover: {"*": [cn-hangzhou]}
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	pol := c.Policy.Route()
	if pol.Mode != route.Distribute || pol.Weights["cn-shanghai"]["cn-hangzhou"] != 10 || pol.FailoverRegions["*"][0] != "cn-hangzhou" {
		t.Fatalf("policy = %+v", pol)
	}
	// The mirror owns the import defaults; the config leaves them unset.
	if d, err := Parse([]byte("cluster: a\ndiscovery: {kubernetes: {}, import: {}}\n")); err != nil || d.Discovery.Import.Suffix != "" {
		t.Fatalf("import defaults: %v %+v", err, d)
	}
	if c.Discovery.Kubernetes.Namespace != "shop" || c.Discovery.Import.Suffix != "mirror" {
		t.Fatalf("discovery = %+v", c.Discovery)
	}
	if (&Config{Cluster: "a", Discovery: Discovery{File: "s.yaml"}}).Policy.Route().Mode != route.Failover {
		t.Fatal("default mode is not failover")
	}
	bad := `
cluster: a
discovery:
  file: s.yaml
  kubernetes: {debounce: -1s}
  import: {addresses: [nope]}
policy: {mode: nearest, distribute: {"*": {a: 0}}}
`
	_, err = Parse([]byte(bad))
	if err == nil {
		t.Fatal("Parse accepted bad discovery and policy sections")
	}
	for _, want := range []string{
		"discovery: set file or kubernetes, not both", "debounce: must not be negative",
		`import.addresses: "nope"`, `policy: unknown mode "nearest"`, "weights add up to zero",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("cluster: a\ndiscovery: {file: s.yaml, import: {}}\n")); err == nil || !strings.Contains(err.Error(), "import: needs discovery.kubernetes") {
		t.Errorf("import without kubernetes: %v", err)
	}
}

// TestSurfaces: the public passthrough is off unless asked for, every
// listen address is checked, and endpoint CIDRs parse.
func TestSurfaces(t *testing.T) {
	c, err := Parse([]byte("cluster: a\ndiscovery: {kubernetes: {endpoint_cidrs: [10.244.0.0/16, \"fd00::/64\"]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicPassthrough.Listen != "" {
		t.Errorf("public_passthrough.listen defaults to %q, want off", c.PublicPassthrough.Listen)
	}
	if got := c.Discovery.Kubernetes.Prefixes(); len(got) != 2 || got[0] != netip.MustParsePrefix("10.244.0.0/16") {
		t.Errorf("endpoint CIDRs %v", got)
	}
	_, err = Parse([]byte(`cluster: a
public_passthrough: {listen: "nope"}
discovery: {kubernetes: {endpoint_cidrs: [10.0.0.0/33]}}
peering:
  listen: "also-nope"
  identity: {workload_api: {}}
  allow: {trust_domains: [td]}
`))
	for _, want := range []string{"public_passthrough.listen", "endpoint_cidrs", "peering.listen"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestServicesExportTo: export_to parses as an audience, must be valid,
// and only makes sense on an exported service.
func TestServicesExportTo(t *testing.T) {
	svcs, err := ParseServices([]byte(`services:
  - {namespace: shop, name: web, exported: true, export_to: [cluster-b, "spiffe://c.example"], ports: [{port: 443}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := svcs[0].Audience; a.Everyone() || a.String() != "cluster-b,spiffe://c.example" {
		t.Errorf("audience %q", a)
	}
	_, err = ParseServices([]byte(`services:
  - {namespace: shop, name: web, exported: true, export_to: ["https://x"], ports: [{port: 443}]}
  - {namespace: shop, name: db, export_to: [cluster-b], ports: [{port: 5432}]}
`))
	if err == nil || !strings.Contains(err.Error(), "services[0].export_to") || !strings.Contains(err.Error(), "services[1].export_to: set on a service that is not exported") {
		t.Errorf("error %v", err)
	}
}
