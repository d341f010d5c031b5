package tunnel

import (
	"bytes"
	"github.com/ewgw/ewgw/internal/model"
	"reflect"
	"testing"
)

func ports(pp ...uint16) []ExportPort {
	var out []ExportPort
	for _, p := range pp {
		out = append(out, ExportPort{Port: p, Ready: 1})
	}
	return out
}

func TestNormalize(t *testing.T) {
	in := []Export{
		{Service: model.ServiceKey{Namespace: "b", Name: "x"}, Ports: ports(1)},
		{Service: model.ServiceKey{Namespace: "a", Name: "z"}, Ports: ports(2)},
		{Service: model.ServiceKey{Namespace: "b", Name: "x"}, Ports: ports(3)},
		{Service: model.ServiceKey{Namespace: "a", Name: "y"}},
	}
	want := []Export{
		{Service: model.ServiceKey{Namespace: "a", Name: "y"}},
		{Service: model.ServiceKey{Namespace: "a", Name: "z"}, Ports: ports(2)},
		{Service: model.ServiceKey{Namespace: "b", Name: "x"}, Ports: ports(3)},
	}
	got := normalize(in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	got[1].Ports[0].Ready = 9
	if in[1].Ports[0].Ready != 1 {
		t.Fatal("normalize shares port slices with its input")
	}
}

func TestDiffApply(t *testing.T) {
	cart := Export{Service: model.ServiceKey{Namespace: "shop", Name: "cart"}, Ports: ports(80)}
	web := Export{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: ports(443)}
	db := Export{Service: model.ServiceKey{Namespace: "data", Name: "db"}, Ports: ports(5432)}
	tests := []struct {
		name       string
		prev, next []Export
		want       delta
	}{
		{name: "none", prev: []Export{cart}, next: []Export{cart}, want: delta{}},
		{name: "add", prev: []Export{cart}, next: []Export{db, cart, web}, want: delta{Upserts: []Export{db, web}}},
		{name: "remove", prev: []Export{db, cart, web}, next: []Export{cart}, want: delta{Removed: []serviceKey{{Namespace: "data", Name: "db"}, {Namespace: "shop", Name: "web"}}}},
		{name: "ready count", prev: []Export{cart}, next: []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "cart"}, Ports: []ExportPort{{Port: 80, Ready: 2}}}},
			want: delta{Upserts: []Export{{Service: model.ServiceKey{Namespace: "shop", Name: "cart"}, Ports: []ExportPort{{Port: 80, Ready: 2}}}}}},
		{name: "port order", prev: []Export{{Service: model.ServiceKey{Namespace: "a", Name: "b"}, Ports: ports(1, 2)}}, next: []Export{{Service: model.ServiceKey{Namespace: "a", Name: "b"}, Ports: ports(2, 1)}},
			want: delta{Upserts: []Export{{Service: model.ServiceKey{Namespace: "a", Name: "b"}, Ports: ports(2, 1)}}}},
		{name: "all of it", prev: []Export{cart}, next: nil, want: delta{Removed: []serviceKey{{Namespace: "shop", Name: "cart"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, next := snapshot{Gen: 4, Exports: normalize(tt.prev)}, snapshot{Gen: 7, Exports: normalize(tt.next)}
			d := diff(prev, next)
			tt.want.Base, tt.want.Gen = 4, 7
			if !reflect.DeepEqual(d, tt.want) {
				t.Fatalf("diff %+v, want %+v", d, tt.want)
			}
			got, err := prev.apply(d)
			if err != nil || !reflect.DeepEqual(got, next) {
				t.Fatalf("apply: %+v %v, want %+v", got, err, next)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	view := snapshot{Gen: 5, Exports: []Export{{Service: model.ServiceKey{Namespace: "a", Name: "b"}}}}
	tests := []struct {
		name string
		d    delta
	}{
		{name: "stale base", d: delta{Base: 4, Gen: 6}},
		{name: "future base", d: delta{Base: 6, Gen: 7}},
		{name: "no progress", d: delta{Base: 5, Gen: 5}},
		{name: "unknown removal", d: delta{Base: 5, Gen: 6, Removed: []serviceKey{{Namespace: "a", Name: "c"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := view.apply(tt.d); err == nil {
				t.Fatal("applied")
			}
		})
	}
	if _, err := view.replace(snapshot{Gen: 5}); err == nil {
		t.Fatal("replaced with a snapshot of the same generation")
	}
}

func TestEncodeUpdate(t *testing.T) {
	var many []Export
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		many = append(many, Export{Service: model.ServiceKey{Namespace: "ns", Name: n}, Ports: ports(443)})
	}
	prev := snapshot{Gen: 1, Exports: many}
	tests := []struct {
		name string
		next []Export
		want msgKind
	}{
		{name: "one more", next: append(cloneExports(many), Export{Service: model.ServiceKey{Namespace: "ns", Name: "f"}}), want: kindDelta},
		{name: "one fewer", next: many[1:], want: kindDelta},
		{name: "everything new", next: []Export{{Service: model.ServiceKey{Namespace: "other", Name: "z"}}}, want: kindExports},
		{name: "nothing left", next: nil, want: kindExports},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := snapshot{Gen: 2, Exports: normalize(tt.next)}
			b, err := encodeUpdate(prev, next)
			if err != nil {
				t.Fatal(err)
			}
			m, err := readMessage(bytes.NewReader(b))
			if err != nil || m.kind != tt.want {
				t.Fatalf("kind %d %v, want %d", m.kind, err, tt.want)
			}
			var got snapshot
			if m.kind == kindDelta {
				got, err = prev.apply(m.delta)
			} else {
				got, err = prev.replace(snapshot{Gen: m.hello.Gen, Exports: m.hello.Exports})
			}
			if err != nil || !reflect.DeepEqual(got, next) {
				t.Fatalf("receiver has %+v %v, want %+v", got, err, next)
			}
		})
	}
}

// TestPeerCatalogue checks which connection's view is the peer's catalogue.
func TestPeerCatalogue(t *testing.T) {
	view := func(gen uint64, name string) snapshot {
		return snapshot{Gen: gen, Exports: []Export{{Service: model.ServiceKey{Namespace: "ns", Name: name}}}}
	}
	oldRun1 := &conn{instance: 1, view: view(9, "old")}
	newRun1 := &conn{instance: 2, view: view(3, "new3")}
	newRun2 := &conn{instance: 2, view: view(4, "new4")}
	p := &peer{}
	steps := []struct {
		name    string
		do      func()
		want    string
		changed bool
	}{
		{"first conn", func() { p.conns = append(p.conns, oldRun1) }, "old", true},
		{"restart wins over a higher generation", func() { p.conns = append(p.conns, newRun1) }, "new3", true},
		{"newest generation of the run", func() { p.conns = append(p.conns, newRun2) }, "new4", true},
		{"lagging conn catches up", func() { newRun1.view = view(4, "new4") }, "new4", false},
		{"newest conn gone", func() { p.conns = []*conn{oldRun1, newRun1} }, "new4", false},
		{"last conn of the run gone", func() { p.conns = []*conn{oldRun1} }, "old", true},
		{"no conn", func() { p.conns = nil }, "", true},
	}
	for _, s := range steps {
		s.do()
		changed := p.refresh()
		got := ""
		if len(p.exports) > 0 {
			got = p.exports[0].Service.Name
		}
		if got != s.want || changed != s.changed {
			t.Fatalf("%s: catalogue %q changed %v, want %q %v", s.name, got, changed, s.want, s.changed)
		}
	}
}
