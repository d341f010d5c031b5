package tunnel

import (
	"bytes"
	"errors"
	"github.com/ewgw/ewgw/internal/model"
	"io"
	"reflect"
	"testing"
)

var testExports = []Export{
	{Service: model.ServiceKey{Namespace: "default", Name: "reviews"}, Ports: []ExportPort{{Port: 9080, Ready: 3}, {Port: 443, Ready: 1}}},
	{Service: model.ServiceKey{Namespace: "x", Name: "y"}},
}

func TestControlRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  message
	}{
		{name: "hello", msg: message{kind: kindHello, hello: hello{Cluster: "c", Region: "r", Zone: "z", Version: "v",
			Instance: 1, Gen: 2, LeaseMS: 2000, Exports: testExports}}},
		{name: "empty hello", msg: message{kind: kindHello}},
		{name: "exports", msg: message{kind: kindExports, hello: hello{Gen: 9, Exports: testExports}}},
		{name: "delta", msg: message{kind: kindDelta, delta: delta{Base: 9, Gen: 10, Upserts: testExports,
			Removed: []serviceKey{{Namespace: "shop", Name: "cart"}, {Namespace: "a", Name: "b"}}}}},
		{name: "empty delta", msg: message{kind: kindDelta, delta: delta{Base: 1, Gen: 2}}},
		{name: "hello part", msg: message{kind: kindHello, more: true, hello: hello{Cluster: "c", Gen: 2, LeaseMS: 2000, Exports: testExports}}},
		{name: "exports part", msg: message{kind: kindExports, more: true, hello: hello{Gen: 9, Exports: testExports}}},
		{name: "delta part", msg: message{kind: kindDelta, more: true, delta: delta{Base: 9, Gen: 10, Upserts: testExports}}},
		{name: "lease", msg: message{kind: kindLease}},
		{name: "goaway", msg: message{kind: kindGoAway}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendMessage(nil, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readMessage(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Fatalf("got %+v, want %+v", got, tt.msg)
			}
		})
	}
}

func TestControlEncoding(t *testing.T) {
	// Pin the wire format of the v3 hello's lease, its "more" flag and an
	// export port.
	b, err := appendMessage(nil, message{kind: kindHello, hello: hello{Instance: 1, Gen: 2, LeaseMS: 400,
		Exports: []Export{{Service: model.ServiceKey{Namespace: "a", Name: "b"}, Ports: []ExportPort{{Port: 443, Ready: 7}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{byte(kindHello), 0, 0, 48, controlVersion, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0x90, 0,
		0, 0, 12, 1, 'a', 1, 'b', 0, 6, 1, 0xbb, 0, 0, 0, 7}
	want[3] = byte(len(want) - controlPrefixLen)
	if !bytes.Equal(b, want) {
		t.Fatalf("hello\n got %x\nwant %x", b, want)
	}
	if b, _ := appendMessage(nil, message{kind: kindLease}); !bytes.Equal(b, []byte{byte(kindLease), 0, 0, 0}) {
		t.Fatalf("lease %x", b)
	}
}

func TestControlDecodeErrors(t *testing.T) {
	delta := frame(kindDelta, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 4, 1, 'a', 1, 'b')
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{name: "unknown kind", in: []byte{99, 0, 0, 0}, want: ErrBadHeader},
		{name: "over cap", in: []byte{byte(kindHello), 0x20, 0, 0}, want: ErrBadHeader},
		{name: "hello version 1", in: frame(kindHello, 1), want: ErrBadHeader},
		{name: "hello version 2", in: frame(kindHello, 2, 0, 0, 0, 0), want: ErrBadHeader},
		{name: "hello without lease", in: frame(kindHello, controlVersion, 0, 0, 0, 0,
			0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0), want: ErrBadHeader},
		{name: "goaway with body", in: frame(kindGoAway, 0), want: ErrBadHeader},
		{name: "lease with body", in: frame(kindLease, 0), want: ErrBadHeader},
		{name: "v1 port list", in: frame(kindExports, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, 1, 'a', 1, 'b', 0, 2, 0, 1), want: ErrBadHeader},
		{name: "truncated port", in: frame(kindExports, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 11, 1, 'a', 1, 'b', 0, 5, 0, 1, 0, 0, 0), want: ErrBadHeader},
		{name: "delta without removals", in: frame(kindDelta, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0), want: ErrBadHeader},
		{name: "more flag 2", in: frame(kindDelta, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0), want: ErrBadHeader},
		{name: "delta truncated key", in: delta[:len(delta)-1], want: io.ErrUnexpectedEOF},
		{name: "delta bad key length", in: frame(kindDelta, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 3, 1, 'a', 5), want: ErrBadHeader},
		{name: "delta trailing byte", in: frame(kindDelta, append(delta[controlPrefixLen:], 0)...), want: ErrBadHeader},
		{name: "truncated frame", in: []byte{byte(kindLease), 0}, want: io.ErrUnexpectedEOF},
		{name: "garbage", in: []byte("GET / HTTP/1.1\r\n\r\n"), want: ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readMessage(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

// frame frames a control message body.
func frame(kind msgKind, body ...byte) []byte {
	return append([]byte{byte(kind), byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestControlOversized(t *testing.T) {
	big := make([]Export, 0, 50000)
	for i := range cap(big) {
		big = append(big, Export{Service: model.ServiceKey{Namespace: "namespace", Name: string(rune('a' + i%26))}, Ports: []ExportPort{{Port: 1, Ready: 1}, {Port: 2, Ready: 2}}})
	}
	if _, err := appendMessage(nil, message{kind: kindExports, hello: hello{Exports: big}}); err == nil {
		t.Fatal("encoded a message over maxControlLen")
	}
}

// TestControlRefusesBadExports: a message carrying an entry no Kubernetes
// cluster could export is refused as a whole, with a PolicyError the
// connection is closed for; ready counts are clamped, not refused.
func TestControlRefusesBadExports(t *testing.T) {
	ports := func(pp ...uint16) []ExportPort {
		var out []ExportPort
		for _, p := range pp {
			out = append(out, ExportPort{Port: p, Ready: 1})
		}
		return out
	}
	many := make([]uint16, MaxExportPorts+1)
	for i := range many {
		many[i] = uint16(i + 1)
	}
	long := "a123456789b123456789c123456789d123456789e123456789f123456789xyzw" // 64 bytes
	tests := []struct {
		name string
		e    Export
		key  *serviceKey // checked as a removal instead
	}{
		{name: "empty namespace", e: Export{Service: model.ServiceKey{Name: "web"}}},
		{name: "upper case", e: Export{Service: model.ServiceKey{Namespace: "Shop", Name: "web"}}},
		{name: "dot", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "web.x"}}},
		{name: "leading dash", e: Export{Service: model.ServiceKey{Namespace: "-shop", Name: "web"}}},
		{name: "trailing dash", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "web-"}}},
		{name: "64 bytes", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: long}}},
		{name: "non-ascii", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "wéb"}}},
		{name: "port 0", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: ports(443, 0)}},
		{name: "port twice", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: ports(443, 80, 443)}},
		{name: "too many ports", e: Export{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: ports(many...)}},
		{name: "bad removal", key: &serviceKey{Namespace: "kube_system", Name: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := []message{
				{kind: kindHello, hello: hello{Exports: []Export{tt.e}}},
				{kind: kindExports, hello: hello{Gen: 2, Exports: []Export{testExports[0], tt.e}}},
				{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Upserts: []Export{tt.e}}},
			}
			if tt.key != nil {
				msgs = []message{{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Removed: []serviceKey{*tt.key}}}}
			}
			for _, m := range msgs {
				b, err := appendMessage(nil, m)
				if err != nil {
					t.Fatal(err)
				}
				_, err = readMessage(bytes.NewReader(b))
				var pe *PolicyError
				if !errors.Is(err, ErrBadHeader) || !errors.As(err, &pe) || pe.Reason != refuseBadExport || pe.Code != CodeProtocol {
					t.Errorf("kind %d: err %v, want a bad_export PolicyError", m.kind, err)
				}
			}
		})
	}

	t.Run("valid edges", func(t *testing.T) {
		e := Export{Service: model.ServiceKey{Namespace: "0", Name: long[:63]}, Ports: ports(many[:MaxExportPorts]...)}
		if err := checkExport(e); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ready clamped", func(t *testing.T) {
		e := Export{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Ports: []ExportPort{{Port: 443, Ready: 1<<32 - 1}, {Port: 80, Ready: MaxReady}, {Port: 81, Ready: 5}}}
		b, _ := appendMessage(nil, message{kind: kindDelta, delta: delta{Base: 1, Gen: 2, Upserts: []Export{e}}})
		m, err := readMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		want := []ExportPort{{Port: 443, Ready: MaxReady}, {Port: 80, Ready: MaxReady}, {Port: 81, Ready: 5}}
		if got := m.delta.Upserts[0].Ports; !reflect.DeepEqual(got, want) {
			t.Fatalf("ports %v, want %v", got, want)
		}
	})
}
