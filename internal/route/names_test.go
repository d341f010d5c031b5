package route

import (
	"net/netip"
	"testing"
)

func testTable() *Table {
	web := ServiceKey{Namespace: "default", Name: "web"}
	api := ServiceKey{Namespace: "shop", Name: "api"}
	wild := ServiceKey{Namespace: "edge", Name: "wild"}
	ep := netip.MustParseAddrPort("10.0.0.1:8443")
	return NewTable(Input{Names: Names{
		Suffixes: []string{"mesh.internal"},
		Hosts: []HostRule{
			{Match: "*.example.com", Target: Target{Service: wild}},
			{Match: "*.deep.example.com", Target: Target{Service: api, Port: 9443}},
			{Match: "exact.example.com", Target: Target{Service: web, Port: 443}},
		},
	}, Services: []Service{
		{Key: web, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{ep}}, {Port: 8080}}},
		{Key: api, Ports: []Port{{Port: 9443}, {Port: 443}}},
		{Key: wild, Ports: []Port{{Port: 443}}},
	}})
}

func TestResolve(t *testing.T) {
	web := ServiceKey{Namespace: "default", Name: "web"}
	api := ServiceKey{Namespace: "shop", Name: "api"}
	wild := ServiceKey{Namespace: "edge", Name: "wild"}
	tests := []struct {
		name   string
		sni    string
		want   Target
		reason Reason
	}{
		{name: "cluster.local", sni: "web.default.svc.cluster.local", want: Target{web, 443}},
		{name: "clusterset.local", sni: "web.default.svc.clusterset.local", want: Target{web, 443}},
		{name: "upper case and trailing dot", sni: "WEB.Default.svc.cluster.local.", want: Target{web, 443}},
		{name: "name.ns", sni: "api.shop", want: Target{api, 9443}},
		{name: "configured suffix", sni: "api.shop.mesh.internal", want: Target{api, 9443}},
		{name: "istio with port", sni: "outbound_.443_._.api.shop.svc.cluster.local", want: Target{api, 443}},
		{name: "istio with subset", sni: "outbound_.8080_.v1_.web.default.svc.cluster.local", want: Target{web, 8080}},
		{name: "istio unknown port", sni: "outbound_.81_._.web.default.svc.cluster.local", reason: ReasonUnknownPort},
		{name: "istio bad port", sni: "outbound_.x_._.web.default.svc.cluster.local", reason: ReasonUnknownName},
		{name: "istio port zero", sni: "outbound_.0_._.web.default.svc.cluster.local", reason: ReasonUnknownName},
		{name: "istio truncated", sni: "outbound_.443_", reason: ReasonUnknownName},
		{name: "exact host beats wildcard", sni: "exact.example.com", want: Target{web, 443}},
		{name: "wildcard", sni: "a.example.com", want: Target{wild, 443}},
		{name: "wildcard several labels", sni: "a.b.example.com", want: Target{wild, 443}},
		{name: "longest wildcard wins", sni: "x.deep.example.com", want: Target{api, 9443}},
		{name: "wildcard needs a label", sni: "example.com", reason: ReasonUnknownService}, // read as name.ns
		{name: "unknown service", sni: "nope.default.svc.cluster.local", reason: ReasonUnknownService},
		{name: "unknown form", sni: "a.b.c.d", reason: ReasonUnknownName},
		{name: "single label", sni: "web", reason: ReasonUnknownName},
		{name: "empty labels", sni: ".default", reason: ReasonUnknownName},
		{name: "ipv4", sni: "10.1.2.3", reason: ReasonIPLiteral},
		{name: "ipv6", sni: "::1", reason: ReasonIPLiteral},
		{name: "bracketed ipv6", sni: "[2001:db8::1]", reason: ReasonIPLiteral},
		{name: "empty", sni: "", reason: ReasonNoSNI},
		{name: "other cluster domain", sni: "web.default.svc.other.local", reason: ReasonUnknownName},
	}
	tab := testTable()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tab.Resolve(tt.sni)
			if reason != tt.reason || got != tt.want {
				t.Fatalf("Resolve(%q) = %v, %q; want %v, %q", tt.sni, got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	tab := testTable()
	web := ServiceKey{Namespace: "default", Name: "web"}
	if got := tab.Endpoints(Target{web, 443}); len(got) != 1 || got[0].String() != "10.0.0.1:8443" {
		t.Fatalf("Endpoints(web:443) = %v", got)
	}
	if got := tab.Endpoints(Target{web, 8080}); len(got) != 0 {
		t.Fatalf("Endpoints(web:8080) = %v, want none", got)
	}
	if got := tab.Endpoints(Target{ServiceKey{"x", "y"}, 1}); got != nil {
		t.Fatalf("Endpoints(unknown) = %v", got)
	}
}

func TestValidateNames(t *testing.T) {
	good := Names{Hosts: []HostRule{{Match: "*.example.com", Target: Target{Service: ServiceKey{"a", "b"}}}}}
	if err := ValidateNames(good); err != nil {
		t.Fatalf("ValidateNames(good) = %v", err)
	}
	bad := Names{Hosts: []HostRule{{Match: "a.*.com"}, {Match: "", Target: Target{Service: ServiceKey{"a", "b"}}}}}
	err := ValidateNames(bad)
	if err == nil {
		t.Fatal("ValidateNames(bad) = nil")
	}
	// Three problems: two bad patterns and one missing target.
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 3 {
		t.Fatalf("got %d problems, want 3: %v", n, err)
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"web.default.svc.cluster.local", "outbound_.443_._.api.shop.svc.cluster.local", "a.example.com", "::1", ""} {
		f.Add(s)
	}
	tab := testTable()
	f.Fuzz(func(t *testing.T, sni string) {
		tg, reason := tab.Resolve(sni)
		if reason == "" {
			if _, ok := tab.Service(tg.Service); !ok || tg.Port == 0 {
				t.Fatalf("Resolve(%q) = %v without a known service port", sni, tg)
			}
		}
	})
}
