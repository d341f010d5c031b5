package tunnel

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestControlRoundTrip(t *testing.T) {
	exports := []Export{{Namespace: "default", Name: "reviews", Ports: []uint16{9080}}, {Namespace: "x", Name: "y"}}
	tests := []struct {
		name string
		msg  message
	}{
		{name: "hello", msg: message{kind: kindHello, hello: hello{Cluster: "c", Region: "r", Zone: "z", Version: "v", Instance: 1, Gen: 2, Exports: exports}}},
		{name: "empty hello", msg: message{kind: kindHello}},
		{name: "exports", msg: message{kind: kindExports, hello: hello{Gen: 9, Exports: exports}}},
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

func TestControlDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "unknown kind", in: []byte{99, 0, 0, 0}},
		{name: "over cap", in: []byte{byte(kindHello), 0x20, 0, 0}},
		{name: "hello version", in: []byte{byte(kindHello), 0, 0, 1, 2}},
		{name: "goaway with body", in: []byte{byte(kindGoAway), 0, 0, 1, 0}},
		{name: "truncated ports", in: []byte{byte(kindExports), 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 6, 1, 'a', 1, 'b', 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readMessage(bytes.NewReader(tt.in)); !errors.Is(err, ErrBadHeader) {
				t.Fatalf("err %v, want ErrBadHeader", err)
			}
		})
	}
}
