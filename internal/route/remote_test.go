package route

import (
	"net/netip"
	"slices"
	"testing"
)

func TestRemoteExports(t *testing.T) {
	local := ServiceKey{Namespace: "default", Name: "web"}
	remoteOnly := ServiceKey{Namespace: "default", Name: "db"}
	tab := NewTable(Input{Names: Names{ImportSuffix: "global"}, Services: []Service{
		{Key: local, Exported: true, Ports: []Port{{Port: 443, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:443")}}}},
		{Key: ServiceKey{Namespace: "default", Name: "private"}, Ports: []Port{{Port: 443}}},
	}, Exports: []Export{
		{Peer: "b", Service: remoteOnly, Ports: []ExportPort{{5432, 1}}},
		{Peer: "c", Service: remoteOnly, Ports: []ExportPort{{5432, 1}, {5433, 2}}},
		{Peer: "b", Service: local, Ports: []ExportPort{{443, 1}, {8443, 1}}},
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
		{name: "mirror suffix alone", sni: "-global.default", reason: ReasonUnknownService},
		{name: "mirror of nothing", sni: "nope-global.default", reason: ReasonUnknownService},
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
	if !tab.Exported(Target{local, 443}) || tab.Exported(Target{local, 8443}) ||
		tab.Exported(Target{ServiceKey{"default", "private"}, 443}) || tab.Exported(Target{remoteOnly, 5432}) {
		t.Fatal("Exported disagrees with the local services")
	}
	exp := tab.Exports()
	if len(exp) != 1 || exp[0].Service != local || !slices.Equal(exp[0].Ports, []ExportPort{{443, 1}}) {
		t.Fatalf("Exports = %+v, want only default/web:443", exp)
	}
}
