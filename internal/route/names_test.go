package route

import (
	"github.com/ewgw/ewgw/internal/model"
	"net/netip"
	"strings"
	"testing"
)

func testTable() *Table {
	web := model.ServiceKey{Namespace: "default", Name: "web"}
	api := model.ServiceKey{Namespace: "shop", Name: "api"}
	wild := model.ServiceKey{Namespace: "edge", Name: "wild"}
	ep := netip.MustParseAddrPort("10.0.0.1:8443")
	return NewTable(Input{Names: Names{
		Suffixes: []string{"mesh.internal"},
		Hosts: []HostRule{
			{Match: "*.example.com", Target: Target{Service: wild}},
			{Match: "*.deep.example.com", Target: Target{Service: api, Port: 9443}},
			{Match: "exact.example.com", Target: Target{Service: web, Port: 443}},
		},
	}, Services: []Service{
		{Key: web, Exported: true, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{ep}}, {Port: 8080}}},
		{Key: api, Exported: true, Ports: []Port{{Port: 9443}, {Port: 443}}},
		// Not exported: reachable only by the host rules that name it.
		{Key: wild, Ports: []Port{{Port: 443}}},
		{Key: model.ServiceKey{Namespace: "default", Name: "private"}, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{ep}}}},
		{Key: model.ServiceKey{Namespace: "default", Name: "kubernetes"}, Exported: true, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{ep}}}},
		{Key: model.ServiceKey{Namespace: "kube-system", Name: "kube-dns"}, Exported: true, Ports: []Port{{Port: 53, Endpoints: []netip.AddrPort{ep}}}},
	}})
}

func TestResolve(t *testing.T) {
	web := model.ServiceKey{Namespace: "default", Name: "web"}
	api := model.ServiceKey{Namespace: "shop", Name: "api"}
	wild := model.ServiceKey{Namespace: "edge", Name: "wild"}
	tests := []struct {
		name   string
		sni    string
		want   Target
		reason Reason
	}{
		{name: "cluster.local", sni: "web.default.svc.cluster.local", want: Target{web, 443}},
		{name: "clusterset.local", sni: "web.default.svc.clusterset.local", want: Target{web, 443}},
		{name: "upper case", sni: "WEB.Default.svc.cluster.local", want: Target{web, 443}},
		{name: "trailing dot", sni: "web.default.svc.cluster.local.", reason: ReasonInvalidName},
		{name: "kelvin sign", sni: "web.default.svc.cluster.\u212Aocal", reason: ReasonInvalidName},
		{name: "non-ascii letter", sni: "w\u00e9b.default", reason: ReasonInvalidName},
		{name: "underscore", sni: "web_1.default", reason: ReasonInvalidName},
		{name: "wildcard label", sni: "*.default.svc.cluster.local", reason: ReasonInvalidName},
		{name: "hyphen first", sni: "-web.default", reason: ReasonInvalidName},
		{name: "label too long", sni: strings.Repeat("a", 64) + ".default", reason: ReasonInvalidName},
		{name: "a-label", sni: "xn--bcher-kva.default", reason: ReasonUnknownService},
		{name: "not exported", sni: "private.default.svc.cluster.local", reason: ReasonNotExported},
		{name: "kube-apiserver", sni: "kubernetes.default.svc.cluster.local", reason: ReasonReserved},
		{name: "kube-apiserver bare", sni: "kubernetes.default", reason: ReasonReserved},
		{name: "kube-apiserver clusterset", sni: "kubernetes.default.svc.clusterset.local", reason: ReasonReserved},
		{name: "kube-apiserver istio", sni: "outbound_.443_._.kubernetes.default", reason: ReasonReserved},
		{name: "kube-apiserver upper case", sni: "KUBERNETES.DEFAULT", reason: ReasonReserved},
		{name: "kube-system", sni: "kube-dns.kube-system.svc.cluster.local", reason: ReasonReserved},
		{name: "host rule to an unexported service", sni: "a.example.com", want: Target{wild, 443}},
		{name: "name.ns", sni: "api.shop", want: Target{api, 9443}},
		{name: "configured suffix", sni: "api.shop.mesh.internal", want: Target{api, 9443}},
		{name: "istio with port", sni: "outbound_.443_._.api.shop.svc.cluster.local", want: Target{api, 443}},
		{name: "istio with subset", sni: "outbound_.8080_.v1_.web.default.svc.cluster.local", want: Target{web, 8080}},
		{name: "istio unknown port", sni: "outbound_.81_._.web.default.svc.cluster.local", reason: ReasonUnknownPort},
		{name: "istio bad port", sni: "outbound_.x_._.web.default.svc.cluster.local", reason: ReasonInvalidName},
		{name: "istio bad host", sni: "outbound_.443_._.we\u212A.default", reason: ReasonInvalidName},
		{name: "istio port zero", sni: "outbound_.0_._.web.default.svc.cluster.local", reason: ReasonUnknownName},
		{name: "istio truncated", sni: "outbound_.443_", reason: ReasonInvalidName},
		{name: "exact host beats wildcard", sni: "exact.example.com", want: Target{web, 443}},
		{name: "wildcard", sni: "a.example.com", want: Target{wild, 443}},
		{name: "wildcard several labels", sni: "a.b.example.com", want: Target{wild, 443}},
		{name: "longest wildcard wins", sni: "x.deep.example.com", want: Target{api, 9443}},
		{name: "wildcard needs a label", sni: "example.com", reason: ReasonUnknownService}, // read as name.ns
		{name: "unknown service", sni: "nope.default.svc.cluster.local", reason: ReasonUnknownService},
		{name: "unknown form", sni: "a.b.c.d", reason: ReasonUnknownName},
		{name: "single label", sni: "web", reason: ReasonUnknownName},
		{name: "empty labels", sni: ".default", reason: ReasonInvalidName},
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
	web := model.ServiceKey{Namespace: "default", Name: "web"}
	if got := tab.Endpoints(Target{web, 443}); len(got) != 1 || got[0].String() != "10.0.0.1:8443" {
		t.Fatalf("Endpoints(web:443) = %v", got)
	}
	if got := tab.Endpoints(Target{web, 8080}); len(got) != 0 {
		t.Fatalf("Endpoints(web:8080) = %v, want none", got)
	}
	if got := tab.Endpoints(Target{model.ServiceKey{Namespace: "x", Name: "y"}, 1}); got != nil {
		t.Fatalf("Endpoints(unknown) = %v", got)
	}
}

func TestValidateNames(t *testing.T) {
	good := Names{Hosts: []HostRule{{Match: "*.example.com", Target: Target{Service: model.ServiceKey{Namespace: "a", Name: "b"}}}}}
	if err := ValidateNames(good); err != nil {
		t.Fatalf("ValidateNames(good) = %v", err)
	}
	bad := Names{Hosts: []HostRule{{Match: "a.*.com"}, {Match: "", Target: Target{Service: model.ServiceKey{Namespace: "a", Name: "b"}}}}}
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
	for _, s := range []string{"web.default.svc.cluster.local", "outbound_.443_._.api.shop.svc.cluster.local", "a.example.com", "::1", "",
		"kubernetes.default", "web.default.svc.cluster.\u212Aocal", "WEB.DEFAULT", "private.default"} {
		f.Add(s)
	}
	tab := testTable()
	f.Fuzz(func(t *testing.T, sni string) {
		tg, reason := tab.Resolve(sni)
		switch reason {
		case ReasonNoSNI, ReasonIPLiteral, ReasonInvalidName:
			return
		}
		// Whatever got past the name check is ASCII letters, digits, '-'
		// and '.', plus the '_' of Istio's form.
		istio := strings.HasPrefix(strings.ToLower(sni), "outbound_.")
		for i := 0; i < len(sni); i++ {
			c := sni[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if ok := isLDH(c) || c == '.' || c == '_' && istio; !ok {
				t.Fatalf("Resolve(%q) accepted a name with byte %q", sni, sni[i])
			}
		}
		if reason == "" {
			svc, ok := tab.Service(tg.Service)
			if !ok || tg.Port == 0 {
				t.Fatalf("Resolve(%q) = %v without a known service port", sni, tg)
			}
			if Reserved(svc.Key) {
				t.Fatalf("Resolve(%q) = %v, a reserved service", sni, tg)
			}
		}
	})
}
