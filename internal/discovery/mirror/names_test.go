package mirror

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
)

func TestMirrorName(t *testing.T) {
	tests := []struct {
		name, source, suffix string
		want                 string // "" when skipped
	}{
		{name: "default", source: "web", suffix: "global", want: "web-global"},
		{name: "longest", source: strings.Repeat("a", 56), suffix: "global", want: strings.Repeat("a", 56) + "-global"},
		{name: "too long", source: strings.Repeat("a", 57), suffix: "global"},
		{name: "upper case suffix", source: "web", suffix: "Global"},
		{name: "digit first", source: "1web", suffix: "global"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mirrorName(tt.source, tt.suffix)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("mirrorName = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("mirrorName = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSliceName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name     string
		mirror   string
		replica  string
		v6       bool
		wantPref string
		wantSuf  string
	}{
		{name: "v4", mirror: "web-global", replica: "gw-0", wantPref: "web-global-"},
		{name: "v6", mirror: "web-global", replica: "gw-0", v6: true, wantPref: "web-global-", wantSuf: "-v6"},
		{name: "long v4", mirror: long, replica: "gw-0", wantPref: long[:maxSlicePrefix] + "-"},
		{name: "long v6", mirror: long, replica: "gw-0", v6: true, wantPref: long[:maxSlicePrefix] + "-", wantSuf: "-v6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sliceName(tt.mirror, tt.replica, tt.v6)
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Fatalf("sliceName = %q: %v", got, errs)
			}
			if !strings.HasPrefix(got, tt.wantPref) || !strings.HasSuffix(got, tt.wantSuf) {
				t.Fatalf("sliceName = %q, want %q…%q", got, tt.wantPref, tt.wantSuf)
			}
			if again := sliceName(tt.mirror, tt.replica, tt.v6); again != got {
				t.Fatalf("sliceName not deterministic: %q, %q", got, again)
			}
			if other := sliceName(tt.mirror, tt.replica+"x", tt.v6); other == got {
				t.Fatalf("replicas share slice name %q", got)
			}
		})
	}
	// Two long mirrors sharing their first 49 characters keep apart.
	if a, b := sliceName(long+"-x", "gw-0", false), sliceName(long+"-y", "gw-0", false); a == b {
		t.Fatalf("long mirrors share slice name %q", a)
	}
}

func TestLabelValues(t *testing.T) {
	for _, v := range []string{ManagedBy, SliceManager} {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label value %q: %v", v, errs)
		}
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{
		Client:    &kubeclient.Set{},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
		Port:      15443,
		Replica:   "gw-0",
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" when valid
	}{
		{name: "valid", edit: func(*Config) {}},
		{name: "no client", edit: func(c *Config) { c.Client = nil }, wantErr: "no client"},
		{name: "suffix too long", edit: func(c *Config) { c.Suffix = strings.Repeat("g", 62) }, wantErr: "suffix"},
		{name: "suffix invalid", edit: func(c *Config) { c.Suffix = "Global" }, wantErr: "suffix"},
		{name: "no addresses", edit: func(c *Config) { c.Addresses = nil }, wantErr: "no addresses"},
		{name: "unspecified address", edit: func(c *Config) { c.Addresses = []netip.Addr{netip.IPv6Unspecified()} }, wantErr: "not a usable"},
		{name: "zero address", edit: func(c *Config) { c.Addresses = []netip.Addr{{}} }, wantErr: "not a usable"},
		{name: "no port", edit: func(c *Config) { c.Port = 0 }, wantErr: "no port"},
		{name: "no replica", edit: func(c *Config) { c.Replica = "" }, wantErr: "no replica"},
		{name: "replica not a label value", edit: func(c *Config) { c.Replica = strings.Repeat("r", 64) }, wantErr: "replica"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	// Every problem is reported at once.
	_, err := New(Config{})
	for _, want := range []string{"no client", "no addresses", "no port", "no replica"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(Config{}): %v, want it to mention %q", err, want)
		}
	}
}

func TestSetSkipsAndMerges(t *testing.T) {
	m, err := New(Config{
		Client:    &kubeclient.Set{},
		Addresses: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fd00::1")},
		Port:      15443,
		Replica:   "gw-0",
	})
	if err != nil {
		t.Fatal(err)
	}
	long := export("shop", strings.Repeat("a", 57), 443)
	set := []model.Export{
		export("shop", "web", 443, 80),
		export("shop", "web", 443, 8443), // the same service seen in another cluster
		export("shop", "noports", 0),
		long,
	}
	m.Set(set)
	m.Set(set) // skipped services are counted once, not once per Set
	if got := testutil.ToFloat64(m.m.skipped); got != 2 {
		t.Errorf("skipped = %v, want 2", got)
	}
	w, ok := m.wanted(key{"shop", "web-global"})
	if !ok || w.source != "web" || len(w.ports) != 3 || w.ports[0] != 80 || w.ports[2] != 8443 {
		t.Errorf("wanted(shop/web-global) = %+v, %v; want source web, ports [80 443 8443]", w, ok)
	}
	if len(m.want) != 1 {
		t.Errorf("desired set %v, want only shop/web-global", m.want)
	}

	// One slice per family; the IPv4-mapped address counts as IPv4.
	slices := m.newSlices(key{"shop", "web-global"}, w)
	if len(slices) != 2 {
		t.Fatalf("newSlices = %d slices, want 2", len(slices))
	}
	v6 := slices[sliceName("web-global", "gw-0", true)]
	if v6 == nil || v6.AddressType != discoveryv1.AddressTypeIPv6 || v6.Endpoints[0].Addresses[0] != "fd00::1" {
		t.Errorf("IPv6 slice = %+v", v6)
	}
	v4 := slices[sliceName("web-global", "gw-0", false)]
	if v4 == nil || v4.AddressType != discoveryv1.AddressTypeIPv4 || v4.Endpoints[0].Addresses[0] != "10.0.0.1" {
		t.Errorf("IPv4 slice = %+v", v4)
	}
	if p := v4.Ports[1]; *p.Name != "tcp-443" || *p.Port != 15443 {
		t.Errorf("IPv4 slice port = %s:%d, want tcp-443:15443", *p.Name, *p.Port)
	}
}
