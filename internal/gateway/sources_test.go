package gateway

import (
	"fmt"
	"testing"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// TestImports: the mirror keeps every service exported anywhere, locally
// even while scaled to zero; cluster-local services are never mirrored,
// nor a peer's export of a name that is cluster-local here.
func TestImports(t *testing.T) {
	web := model.ServiceKey{Namespace: "shop", Name: "web"}
	db := model.ServiceKey{Namespace: "data", Name: "db"}
	local := []route.Service{
		{Key: web, Exported: true, Ports: []route.Port{{Port: 8443}}}, // no endpoints: still exported
		{Key: model.ServiceKey{Namespace: "shop", Name: "private"}, Ports: []route.Port{{Port: 443}}},
	}
	remote := []model.Export{
		{Peer: "b", Service: web, Ports: []model.ExportPort{{Port: 443, Ready: 2}, {Port: 8443, Ready: 1}}},
		{Peer: "c", Service: db, Ports: []model.ExportPort{{Port: 5432, Ready: 1}}},
		{Peer: "c", Service: model.ServiceKey{Namespace: "shop", Name: "private"}, Ports: []model.ExportPort{{Port: 443, Ready: 1}}},
		{Peer: "c", Service: model.ServiceKey{Namespace: "kube-system", Name: "dns"}, Ports: []model.ExportPort{{Port: 53, Ready: 1}}},
	}
	var got []string
	for _, e := range imports(local, remote) {
		got = append(got, fmt.Sprintf("%s:%s%v", e.Peer, e.Service, e.Ports))
	}
	if want := "[:shop/web[{8443 0}] b:shop/web[{443 2} {8443 1}] c:data/db[{5432 1}]]"; fmt.Sprint(got) != want {
		t.Fatalf("imports = %s, want %s", got, want)
	}
	if got := imports(nil, nil); len(got) != 0 {
		t.Fatalf("imports of nothing = %v", got)
	}
}
