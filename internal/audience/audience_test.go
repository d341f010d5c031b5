package audience

import "testing"

func TestAllows(t *testing.T) {
	a, err := ParseList(" cluster-b, spiffe://c.example , spiffe://d.example/ns/*/sa/ewgw,spiffe://e.example/gw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    Peer
		want bool
	}{
		{Peer{Cluster: "cluster-b", ID: "spiffe://b.example/ns/ewgw/sa/ewgw"}, true},
		{Peer{Cluster: "cluster-x", ID: "spiffe://b.example/ns/ewgw/sa/ewgw"}, false},
		{Peer{Cluster: "cluster-c", ID: "spiffe://c.example/anything"}, true},
		{Peer{Cluster: "cluster-c", ID: "spiffe://c.example.evil/anything"}, false},
		{Peer{Cluster: "cluster-d", ID: "spiffe://d.example/ns/prod/sa/ewgw"}, true},
		{Peer{Cluster: "cluster-d", ID: "spiffe://d.example/ns/a/b/sa/ewgw"}, false},
		{Peer{Cluster: "cluster-d", ID: "spiffe://d.example/ns/prod/sa/other"}, false},
		{Peer{Cluster: "cluster-e", ID: "spiffe://e.example/gw"}, true},
		{Peer{Cluster: "cluster-e", ID: "spiffe://e.example/gw2"}, false},
		{Peer{Cluster: "cluster-e", ID: "spiffe://e.examplegw"}, false},
		{Peer{}, false},
	} {
		if got := a.Allows(tc.p); got != tc.want {
			t.Errorf("Allows(%+v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if a.Everyone() {
		t.Error("a restricted audience reports Everyone")
	}
}

func TestZeroIsEveryone(t *testing.T) {
	for _, s := range []string{"", " , "} {
		a, err := ParseList(s)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Everyone() || !a.Allows(Peer{Cluster: "any", ID: "spiffe://x/y"}) {
			t.Errorf("%q: not everyone", s)
		}
	}
}

func TestCanonical(t *testing.T) {
	a, _ := ParseList("b,a,spiffe://z,a")
	b, _ := ParseList("spiffe://z, a ,b")
	if !a.Equal(b) || a.String() != "a,b,spiffe://z" {
		t.Errorf("%q vs %q", a, b)
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"Cluster-B", "https://x", "spiffe://UPPER", "spiffe://td/", "spiffe://td//x", "spiffe://td/[", "a b", "K"} {
		if _, err := ParseList(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

// FuzzParseList: whatever parses has a canonical form that parses to the
// same audience, and an audience that admits a peer by cluster name lists
// that name.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"cluster-b", "spiffe://td", "spiffe://td/ns/*/sa/ewgw", "a, b,spiffe://x/y", "", "spiffe://td/[", "K"} {
		f.Add(s, "cluster-b", "spiffe://td/ns/a/sa/ewgw")
	}
	f.Fuzz(func(t *testing.T, s, cluster, id string) {
		a, err := ParseList(s)
		if err != nil {
			return
		}
		b, err := ParseList(a.String())
		if err != nil || !a.Equal(b) {
			t.Fatalf("%q: canonical %q parses to %q, %v", s, a, b, err)
		}
		p := Peer{Cluster: cluster, ID: id}
		if a.Allows(p) != b.Allows(p) {
			t.Fatalf("%q and its canonical form disagree on %+v", s, p)
		}
	})
}
