package route

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
)

func TestRemoteExports(t *testing.T) {
	local := model.ServiceKey{Namespace: "default", Name: "web"}
	remoteOnly := model.ServiceKey{Namespace: "default", Name: "db"}
	tab := NewTable(Input{Names: Names{ImportSuffix: "global"}, Services: []Service{
		{Key: local, Exported: true, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:443")}}}},
		{Key: model.ServiceKey{Namespace: "default", Name: "private"}, Ports: []Port{{Port: 443}}},
	}, Exports: []model.Export{
		{Peer: "b", Service: model.ServiceKey{Namespace: "default", Name: "private"}, Ports: []model.ExportPort{{Port: 443, Ready: 1}}},
		{Peer: "b", Service: model.ServiceKey{Namespace: "kube-system", Name: "kube-dns"}, Ports: []model.ExportPort{{Port: 53, Ready: 1}}},
		{Peer: "b", Service: model.ServiceKey{Namespace: "default", Name: "kubernetes"}, Ports: []model.ExportPort{{Port: 443, Ready: 1}}},
		{Peer: "b", Service: remoteOnly, Ports: []model.ExportPort{{Port: 5432, Ready: 1}}},
		{Peer: "c", Service: remoteOnly, Ports: []model.ExportPort{{Port: 5432, Ready: 1}, {Port: 5433, Ready: 2}}},
		{Peer: "b", Service: local, Ports: []model.ExportPort{{Port: 443, Ready: 1}, {Port: 8443, Ready: 1}}},
	}})
	tests := []struct {
		name   string
		sni    string
		want   Target
		reason Reason
		peers  []string
	}{
		{name: "remote only, default port", sni: "db.default.svc.cluster.local", want: Target{remoteOnly, 5432}, peers: []string{"b", "c"}},
		{name: "remote only, port one peer has", sni: "outbound_.5433_._.db.default.svc.cluster.local", want: Target{remoteOnly, 5433}, peers: []string{"c"}},
		{name: "remote only, port nobody has", sni: "outbound_.1_._.db.default.svc.cluster.local", reason: ReasonUnknownPort},
		{name: "local and remote", sni: "web.default.svc.cluster.local", want: Target{local, 443}, peers: []string{"b"}},
		{name: "mirror name of a remote service", sni: "db-global.default.svc.cluster.local", want: Target{remoteOnly, 5432}, peers: []string{"b", "c"}},
		{name: "mirror name of a local service", sni: "outbound_.443_._.web-global.default.svc.cluster.local", want: Target{local, 443}, peers: []string{"b"}},
		{name: "mirror suffix alone", sni: "-global.default", reason: ReasonInvalidName},
		{name: "mirror of nothing", sni: "nope-global.default", reason: ReasonUnknownService},
		{name: "a peer's export never stands in for a local private service", sni: "private.default.svc.cluster.local", reason: ReasonNotExported},
		{name: "nor does its mirror name", sni: "private-global.default", reason: ReasonNotExported},
		{name: "a peer's kube-system export", sni: "kube-dns.kube-system", reason: ReasonReserved},
		{name: "a peer's kube-apiserver export, by mirror name", sni: "kubernetes-global.default", reason: ReasonReserved},
		{name: "port only remote", sni: "outbound_.8443_._.web.default.svc.cluster.local", want: Target{local, 8443}, peers: []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tab.Resolve(tt.sni)
			if got != tt.want || reason != tt.reason {
				t.Fatalf("Resolve = %v %q, want %v %q", got, reason, tt.want, tt.reason)
			}
			if reason == "" && !slices.Equal(tab.Peers(got), tt.peers) {
				t.Fatalf("Peers = %v, want %v", tab.Peers(got), tt.peers)
			}
		})
	}
	b := audience.Peer{Cluster: "b", ID: "spiffe://b.example/gw"}
	if !tab.ExportedTo(Target{local, 443}, b) || tab.ExportedTo(Target{local, 8443}, b) ||
		tab.ExportedTo(Target{model.ServiceKey{Namespace: "default", Name: "private"}, 443}, b) || tab.ExportedTo(Target{remoteOnly, 5432}, b) {
		t.Fatal("ExportedTo disagrees with the local services")
	}
	exp := tab.Exports()
	if len(exp) != 1 || exp[0].Service != local || !slices.Equal(exp[0].Ports, []model.ExportPort{{Port: 443, Ready: 1}}) {
		t.Fatalf("Exports = %+v, want only default/web:443", exp)
	}
}

// TestAudience: an export restricted to some peers is announced with its
// audience, and reaches only them; reserved services are never exported.
func TestAudience(t *testing.T) {
	web := model.ServiceKey{Namespace: "shop", Name: "web"}
	db := model.ServiceKey{Namespace: "shop", Name: "db"}
	api := model.ServiceKey{Namespace: "default", Name: "kubernetes"}
	onlyB, err := audience.ParseList("cluster-b")
	if err != nil {
		t.Fatal(err)
	}
	onlyC, err := audience.ParseList("spiffe://c.example")
	if err != nil {
		t.Fatal(err)
	}
	ep := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:443")}
	tab := NewTable(Input{Services: []Service{
		{Key: web, Exported: true, Audience: onlyB, Ports: []Port{{Port: 443, Endpoints: ep}}},
		{Key: db, Exported: true, Audience: onlyC, Ports: []Port{{Port: 5432, Endpoints: ep}}},
		{Key: api, Exported: true, Ports: []Port{{Port: 443, Endpoints: ep}}},
	}})
	b := audience.Peer{Cluster: "cluster-b", ID: "spiffe://b.example/ns/ewgw/sa/ewgw"}
	c := audience.Peer{Cluster: "cluster-c", ID: "spiffe://c.example/ns/ewgw/sa/ewgw"}
	for _, tc := range []struct {
		tg   Target
		p    audience.Peer
		want bool
	}{
		{Target{web, 443}, b, true},
		{Target{web, 443}, c, false},
		{Target{db, 5432}, b, false},
		{Target{db, 5432}, c, true},
		{Target{api, 443}, b, false},
	} {
		if got := tab.ExportedTo(tc.tg, tc.p); got != tc.want {
			t.Errorf("ExportedTo(%v, %s) = %v, want %v", tc.tg, tc.p.Cluster, got, tc.want)
		}
	}
	exp := tab.Exports()
	if len(exp) != 2 || exp[0].Service != db || !exp[0].Audience.Equal(onlyC) || exp[1].Service != web || !exp[1].Audience.Equal(onlyB) {
		t.Fatalf("Exports = %+v, want db (c only) and web (b only)", exp)
	}
}

// TestResolvePublic: the public passthrough reaches local services exported
// to every peer, nothing else.
func TestResolvePublic(t *testing.T) {
	open := model.ServiceKey{Namespace: "shop", Name: "web"}
	restricted := model.ServiceKey{Namespace: "shop", Name: "db"}
	private := model.ServiceKey{Namespace: "shop", Name: "private"}
	remote := model.ServiceKey{Namespace: "shop", Name: "remote"}
	onlyB, _ := audience.ParseList("cluster-b")
	ep := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:443")}
	tab := NewTable(Input{
		Names: Names{Hosts: []HostRule{
			{Match: "private.example.com", Target: Target{Service: private}},
			{Match: "web.example.com", Target: Target{Service: open}},
		}},
		Services: []Service{
			{Key: open, Exported: true, Ports: []Port{{Port: 443, Endpoints: ep}}},
			{Key: restricted, Exported: true, Audience: onlyB, Ports: []Port{{Port: 443, Endpoints: ep}}},
			{Key: private, Ports: []Port{{Port: 443, Endpoints: ep}}},
			{Key: model.ServiceKey{Namespace: "default", Name: "kubernetes"}, Exported: true, Ports: []Port{{Port: 443, Endpoints: ep}}},
		},
		Exports: []model.Export{{Peer: "b", Service: remote, Ports: []model.ExportPort{{Port: 443, Ready: 1}}}, {Peer: "b", Service: open, Ports: []model.ExportPort{{Port: 8443, Ready: 1}}}},
	})
	for _, tc := range []struct {
		sni    string
		want   Target
		reason Reason
	}{
		{"outbound_.443_._.web.shop.svc.cluster.local", Target{open, 443}, ""},
		{"web.shop", Target{open, 443}, ""},
		{"web.example.com", Target{open, 443}, ""},
		{"outbound_.8443_._.web.shop.svc.cluster.local", Target{}, ReasonUnknownPort}, // only a peer has it
		{"db.shop", Target{}, ReasonNotExported},
		{"private.shop", Target{}, ReasonNotExported},
		{"private.example.com", Target{}, ReasonNotExported},
		{"remote.shop", Target{}, ReasonNotExported},
		{"kubernetes.default", Target{}, ReasonReserved},
		{"nope.shop", Target{}, ReasonUnknownService},
	} {
		got, reason := tab.ResolvePublic(tc.sni)
		if got != tc.want || reason != tc.reason {
			t.Errorf("ResolvePublic(%q) = %v %q, want %v %q", tc.sni, got, reason, tc.want, tc.reason)
		}
	}
}
