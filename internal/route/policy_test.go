package route

import (
	"fmt"
	"github.com/ewgw/ewgw/internal/model"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var shopWeb = model.ServiceKey{Namespace: "shop", Name: "web"}

// world is a cluster set for policy tests: this gateway is cluster "sh1" in
// cn-shanghai; peers "sh2" (cn-shanghai), "hz" (cn-hangzhou), "bj"
// (cn-beijing) and "sg" (ap-singapore), each exporting shop/web:443 with
// the given ready counts. A count of zero leaves the peer's export out, as
// a withdrawn service is; localReady zero leaves the local service without
// endpoints.
type world struct {
	localReady int
	ready      map[string]int // peer → ready endpoints
	policy     Policy
	override   *Policy
}

var worldPeers = []model.PeerInfo{
	{Name: "sh2", Cluster: "sh2", Region: "cn-shanghai", RTT: 2 * time.Millisecond},
	{Name: "hz", Cluster: "hz", Region: "cn-hangzhou", RTT: 12 * time.Millisecond},
	{Name: "bj", Cluster: "bj", Region: "cn-beijing", RTT: 9 * time.Millisecond},
	{Name: "sg", Cluster: "sg", Region: "ap-singapore", RTT: 40 * time.Millisecond},
}

func (w world) table() *Table {
	var eps []netip.AddrPort
	for i := range w.localReady {
		eps = append(eps, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8443))
	}
	in := Input{
		Self:     Self{Cluster: "sh1", Region: "cn-shanghai"},
		Policy:   w.policy,
		Services: []Service{{Key: shopWeb, Exported: true, Policy: w.override, Ports: []Port{{Port: 443, Endpoints: eps}}}},
		Peers:    worldPeers,
	}
	for _, p := range worldPeers {
		if n := w.ready[p.Name]; n > 0 {
			in.Exports = append(in.Exports, model.Export{Peer: p.Name, Service: shopWeb, Ports: []model.ExportPort{{Port: 443, Ready: n}}})
		}
	}
	return NewTable(in)
}

// names renders a plan as cluster names, "sh1" being local.
func names(plan []Hop) string {
	var s []string
	for _, h := range plan {
		s = append(s, h.Cluster)
	}
	return strings.Join(s, ",")
}

// firstChoices counts the first hop of n plans with picks spread evenly
// over [0,1).
func firstChoices(tab *Table, n int) map[string]int {
	got := map[string]int{}
	for i := range n {
		plan := tab.Plan(Target{shopWeb, 443}, (float64(i)+0.5)/float64(n))
		got[plan[0].Cluster]++
	}
	return got
}

func TestPlanOrder(t *testing.T) {
	all := map[string]int{"sh2": 1, "hz": 1, "bj": 1, "sg": 1}
	hzFirst := Policy{FailoverRegions: map[string][]string{"cn-shanghai": {"cn-hangzhou"}}}
	tests := []struct {
		name string
		w    world
		want string
	}{
		{"failover: local first, then nearest", world{localReady: 2, ready: all}, "sh1,sh2,bj,hz,sg"},
		{"failover: no local endpoint", world{ready: all}, "sh2,bj,hz,sg"},
		{"failover: priority region before nearer peers", world{localReady: 1, ready: all, policy: hzFirst}, "sh1,hz,sh2,bj,sg"},
		{"failover: priority list of another source region is ignored", world{ready: all,
			policy: Policy{FailoverRegions: map[string][]string{"cn-beijing": {"ap-singapore"}}}}, "sh2,bj,hz,sg"},
		{"failover: any-region list", world{ready: all,
			policy: Policy{FailoverRegions: map[string][]string{AnyRegion: {"ap-singapore", "cn-hangzhou"}}}}, "sg,hz,sh2,bj"},
		{"failover: priority region withdrawn, next nearest", world{ready: map[string]int{"bj": 3, "sg": 1}, policy: hzFirst}, "bj,sg"},
		{"failover: a peer whose lease expired is absent", world{localReady: 0, ready: map[string]int{"hz": 1}, policy: hzFirst}, "hz"},
		{"primary: listed order, then fallback", world{localReady: 1, ready: all,
			policy: Policy{Mode: Primary, Clusters: []string{"hz", "sg"}}}, "hz,sg,sh1,sh2,bj"},
		{"primary: first listed gone", world{localReady: 1, ready: map[string]int{"sg": 1, "bj": 1},
			policy: Policy{Mode: Primary, Clusters: []string{"hz", "sg"}}}, "sg,sh1,bj"},
		{"override replaces mode", world{localReady: 1, ready: all, override: &Policy{Mode: Primary, Clusters: []string{"bj"}}}, "bj,sh1,sh2,hz,sg"},
		{"nothing serves it", world{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(tt.w.table().Plan(Target{shopWeb, 443}, 0)); got != tt.want {
				t.Fatalf("plan %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPlanShares(t *testing.T) {
	ninetyTen := Policy{Mode: Distribute, Weights: map[string]map[string]uint32{"cn-shanghai": {"cn-shanghai": 90, "cn-hangzhou": 10}}}
	tests := []struct {
		name string
		w    world
		want map[string]int // first choices out of 1000
	}{
		{"distribute 90/10", world{localReady: 1, ready: map[string]int{"hz": 5}, policy: ninetyTen},
			map[string]int{"sh1": 900, "hz": 100}},
		{"distribute: local region share goes to same-region peer when local is empty",
			world{ready: map[string]int{"sh2": 1, "hz": 1}, policy: ninetyTen}, map[string]int{"sh2": 900, "hz": 100}},
		{"distribute: unserved region's weight dropped", world{localReady: 1, ready: map[string]int{"bj": 1}, policy: ninetyTen},
			map[string]int{"sh1": 1000}},
		{"distribute: no weighted region serves it, failover", world{ready: map[string]int{"bj": 1, "sg": 1}, policy: ninetyTen},
			map[string]int{"bj": 1000}},
		{"distribute: weights from any region", world{localReady: 1, ready: map[string]int{"sg": 1},
			policy: Policy{Mode: Distribute, Weights: map[string]map[string]uint32{AnyRegion: {"cn-shanghai": 3, "ap-singapore": 1}}}},
			map[string]int{"sh1": 750, "sg": 250}},
		{"active-active: proportional to ready endpoints", world{localReady: 3, ready: map[string]int{"hz": 1, "sg": 4},
			policy: Policy{Mode: ActiveActive}}, map[string]int{"sh1": 375, "hz": 125, "sg": 500}},
		{"active-active: scaled to zero locally", world{ready: map[string]int{"hz": 1, "sg": 1},
			policy: Policy{Mode: ActiveActive}}, map[string]int{"hz": 500, "sg": 500}},
		{"failover ignores weights", world{localReady: 1, ready: map[string]int{"hz": 9},
			policy: Policy{Weights: ninetyTen.Weights}}, map[string]int{"sh1": 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := firstChoices(tt.w.table(), 1000)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("first choices %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPlanFallsBack checks that whatever is drawn first, every other
// cluster follows in fallback order, so a failed first choice is retried.
func TestPlanFallsBack(t *testing.T) {
	w := world{localReady: 1, ready: map[string]int{"hz": 1, "bj": 1},
		policy: Policy{Mode: Distribute, Weights: map[string]map[string]uint32{AnyRegion: {"cn-shanghai": 1, "cn-hangzhou": 1}}}}
	tab := w.table()
	for pick, want := range map[float64]string{0.1: "sh1,bj,hz", 0.9: "hz,sh1,bj"} {
		if got := names(tab.Plan(Target{shopWeb, 443}, pick)); got != want {
			t.Errorf("pick %v: plan %q, want %q", pick, got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	w := world{localReady: 1, ready: map[string]int{"hz": 3}, policy: Policy{Mode: ActiveActive}}
	d := w.table().Decide("web.shop.svc.cluster.local")
	if d.Reason != "" || d.Mode != ActiveActive || len(d.Candidates) != 2 {
		t.Fatalf("decision %+v", d)
	}
	if c := d.Candidates[0]; !c.Local() || c.Share != 0.25 || c.Ready != 1 {
		t.Errorf("local candidate %+v, want share 0.25", c)
	}
	if c := d.Candidates[1]; c.Peer != "hz" || c.Region != "cn-hangzhou" || c.Share != 0.75 {
		t.Errorf("peer candidate %+v, want hz with share 0.75", c)
	}
	if d := w.table().Decide("nope.shop.svc.cluster.local"); d.Reason != ReasonUnknownService || d.Candidates != nil {
		t.Errorf("unknown name decided %+v", d)
	}
}

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		ann  map[string]string
		want string // fmt of the policy, or "error: substring"
	}{
		{map[string]string{"other": "x"}, "<nil>"},
		{map[string]string{AnnotationPolicy: "active-active"}, "&{active-active map[] map[] []}"},
		{map[string]string{AnnotationDistribute: "a=90, b=10"}, "&{distribute map[] map[*:map[a:90 b:10]] []}"},
		{map[string]string{AnnotationPrimary: "c1, c2"}, "&{primary map[] map[] [c1 c2]}"},
		{map[string]string{AnnotationPolicy: "failover", AnnotationFailover: "r2,r3"}, "&{failover map[*:[r2 r3]] map[] []}"},
		{map[string]string{AnnotationPolicy: "nearest"}, `error: unknown mode "nearest"`},
		{map[string]string{AnnotationDistribute: "a=ninety"}, `error: "a=ninety" is not region=weight`},
		{map[string]string{AnnotationDistribute: "a=1,a=2"}, `error: region "a" given twice`},
		{map[string]string{AnnotationDistribute: "a=0"}, "error: weights add up to zero"},
		{map[string]string{AnnotationPolicy: "primary"}, "error: primary: needs an ordered list"},
		{map[string]string{AnnotationPrimary: "c1,c1"}, `error: cluster "c1" listed twice`},
	}
	for _, tt := range tests {
		p, err := ParseAnnotations(tt.ann)
		got := fmt.Sprint(p)
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(tt.want, "error: ") && got != tt.want || strings.HasPrefix(tt.want, "error: ") && !strings.Contains(got, tt.want[7:]) {
			t.Errorf("%v: got %s, want %s", tt.ann, got, tt.want)
		}
	}
}

// FuzzParseAnnotations: any annotation values parse or fail cleanly, and a
// policy that parses validates and plans without panicking.
func FuzzParseAnnotations(f *testing.F) {
	f.Add("distribute", "r1=90,r2=10", "c1,c2", "r2")
	f.Add("", "a=1, a=2", "", "")
	f.Add("primary", "", "c1,,c1", ",")
	f.Fuzz(func(t *testing.T, mode, dist, prim, fo string) {
		p, err := ParseAnnotations(map[string]string{
			AnnotationPolicy: mode, AnnotationDistribute: dist, AnnotationPrimary: prim, AnnotationFailover: fo})
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy %+v does not validate: %v", p, err)
		}
		w := world{localReady: 1, ready: map[string]int{"hz": 2, "sg": 1}, override: p}
		plan := w.table().Plan(Target{shopWeb, 443}, 0.5)
		if len(plan) != 3 {
			t.Fatalf("plan %v lost a cluster", names(plan))
		}
	})
}
