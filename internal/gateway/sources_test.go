package gateway

import (
	"fmt"
	"testing"

	"github.com/ewgw/ewgw/internal/route"
)

// TestImports: the mirror keeps every service exported anywhere, locally
// even while scaled to zero, with the union of its ports; cluster-local
// services are never mirrored.
func TestImports(t *testing.T) {
	web := route.ServiceKey{Namespace: "shop", Name: "web"}
	db := route.ServiceKey{Namespace: "data", Name: "db"}
	local := []route.Service{
		{Key: web, Exported: true, Ports: []route.Port{{Port: 8443}}}, // no endpoints: still exported
		{Key: route.ServiceKey{Namespace: "shop", Name: "private"}, Ports: []route.Port{{Port: 443}}},
	}
	remote := []route.Export{
		{Peer: "b", Service: web, Ports: []route.ExportPort{{Port: 443, Ready: 2}, {Port: 8443, Ready: 1}}},
		{Peer: "c", Service: db, Ports: []route.ExportPort{{Port: 5432, Ready: 1}}},
	}
	got := fmt.Sprint(imports(local, remote))
	if want := "[{data db [5432]} {shop web [443 8443]}]"; got != want {
		t.Fatalf("imports = %s, want %s", got, want)
	}
	if got := imports(nil, nil); len(got) != 0 {
		t.Fatalf("imports of nothing = %v", got)
	}
}
