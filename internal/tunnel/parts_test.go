package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/ewgw/ewgw/internal/model"
	"io"
	"reflect"
	"testing"
)

// longNames returns n exports whose names are 60 characters long, from
// index from, in namespace ns, each with one port.
func longNames(ns string, from, n int) []Export {
	out := make([]Export, n)
	for i := range out {
		out[i] = Export{Service: model.ServiceKey{Namespace: ns, Name: fmt.Sprintf("service-%052d", from+i)}, Ports: []ExportPort{{Port: 443, Ready: 2}}}
	}
	return out
}

// readAll decodes every message in b, each part collected into its
// update, with cfg's budget.
func readAll(t *testing.T, cfg Config, b []byte, held int) ([]message, error) {
	t.Helper()
	tun := &Tunnel{cfg: cfg.withDefaults(), m: newMetrics(nil)}
	r := bytes.NewReader(b)
	var out []message
	for {
		m, err := readMessage(r)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(m.hello.Exports)+len(m.delta.Upserts) > 0 && sizeOf(m.hello.Exports, exportLen)+sizeOf(m.delta.Upserts, exportLen) > partLen {
			t.Fatalf("a part of kind %d over %d bytes", m.kind, partLen)
		}
		if m.kind != kindLease {
			if m, err = tun.readParts(r, m, held); err != nil {
				return out, err
			}
		}
		out = append(out, m)
	}
}

// TestParts: a hello, snapshot or delta far larger than one control
// message goes in parts, each under partLen, and arrives whole.
func TestParts(t *testing.T) {
	big := longNames("shop", 0, 20_000) // about 1.5 MB encoded
	cfg := Config{MaxImportedServices: 100_000, MaxImportedBytes: 16 << 20}
	h := hello{Cluster: "west", Instance: 1, Gen: 7, LeaseMS: 2000, Exports: big}
	b, err := appendSnapshot(nil, kindHello, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, cfg, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].kind != kindHello || got[0].more || !reflect.DeepEqual(got[0].hello, h) {
		t.Fatalf("hello in parts arrived as %d messages", len(got))
	}

	prev := snapshot{Gen: 7, Exports: big}
	next := snapshot{Gen: 8, Exports: normalize(append(longNames("shop", 5_000, 15_000), longNames("web", 0, 12_000)...))}
	b, err = encodeUpdate(prev, next)
	if err != nil {
		t.Fatal(err)
	}
	got, err = readAll(t, cfg, b, len(prev.Exports))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].kind != kindDelta {
		t.Fatalf("update arrived as %d messages", len(got))
	}
	applied, err := prev.apply(got[0].delta)
	if err != nil || !exportsEqual(applied.Exports, next.Exports) {
		t.Fatalf("delta in parts applied to %d services (%v), want %d", len(applied.Exports), err, len(next.Exports))
	}

	// Everything changes: the snapshot is smaller than the delta.
	b, err = encodeUpdate(next, snapshot{Gen: 9, Exports: longNames("other", 0, 30_000)})
	if err != nil {
		t.Fatal(err)
	}
	got, err = readAll(t, cfg, b, len(next.Exports))
	if err != nil || len(got) != 1 || got[0].kind != kindExports || len(got[0].hello.Exports) != 30_000 {
		t.Fatalf("snapshot in parts: %d messages, %v", len(got), err)
	}
}

// TestPartsRefused: parts are refused as soon as those so far go over the
// budget, and a part that does not continue the update is a protocol
// error.
func TestPartsRefused(t *testing.T) {
	hl := func(exports []Export) []byte {
		b, err := appendSnapshot(nil, kindHello, hello{Gen: 1, Exports: exports})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	part := func(m message) []byte {
		b, err := appendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		cfg    Config
		in     []byte
		held   int
		reason string // a PolicyError's, or "" for a plain error
		want   error
	}{
		{name: "services", cfg: Config{MaxImportedServices: 1000}, in: hl(longNames("a", 0, 5000)), reason: refuseServices},
		{name: "bytes", cfg: Config{MaxImportedBytes: 100_000}, in: hl(longNames("a", 0, 5000)), reason: refuseBytes},
		{name: "delta removes more than held", held: 1, in: part(message{kind: kindDelta,
			delta: delta{Base: 1, Gen: 2, Removed: []serviceKey{{Namespace: "a", Name: "b"}, {Namespace: "a", Name: "c"}}}})},
		{name: "another generation", in: append(part(message{kind: kindExports, more: true, hello: hello{Gen: 2, Exports: longNames("a", 0, 1)}}),
			part(message{kind: kindExports, hello: hello{Gen: 3}})...), want: errPartOrder},
		{name: "a lease inside", in: append(part(message{kind: kindDelta, more: true, delta: delta{Base: 1, Gen: 2, Upserts: longNames("a", 0, 1)}}),
			part(message{kind: kindLease})...), want: errPartOrder},
		{name: "a snapshot inside a delta", in: append(part(message{kind: kindDelta, more: true, delta: delta{Base: 1, Gen: 2, Upserts: longNames("a", 0, 1)}}),
			part(message{kind: kindExports, hello: hello{Gen: 2}})...), want: errPartOrder},
		{name: "an empty part", in: part(message{kind: kindDelta, more: true, delta: delta{Base: 1, Gen: 2}})},
		{name: "cut short", in: part(message{kind: kindExports, more: true, hello: hello{Gen: 2, Exports: longNames("a", 0, 1)}}), want: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, tt.cfg, tt.in, tt.held)
			var pe *PolicyError
			switch {
			case err == nil:
				t.Fatal("accepted")
			case tt.reason != "":
				if !errors.As(err, &pe) || pe.Reason != tt.reason || pe.Code != CodeLimit {
					t.Fatalf("err %v, want a %s refusal", err, tt.reason)
				}
			case errors.As(err, &pe):
				t.Fatalf("err %v, want a protocol error", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}
