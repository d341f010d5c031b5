package tunnel

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func sampleHeader() Header {
	return Header{
		Namespace:     "default",
		Name:          "reviews",
		Port:          9080,
		SNI:           "reviews.default.svc.cluster.local",
		SourceCluster: "east",
		Client:        netip.MustParseAddrPort("10.1.2.3:41000"),
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name string
		edit func(*Header)
	}{
		{name: "full", edit: func(*Header) {}},
		{name: "ipv6 client", edit: func(h *Header) { h.Client = netip.MustParseAddrPort("[2001:db8::1]:443") }},
		{name: "no client", edit: func(h *Header) { h.Client = netip.AddrPort{} }},
		{name: "empty optional", edit: func(h *Header) { h.SNI, h.SourceCluster = "", "" }},
		{name: "max lengths", edit: func(h *Header) {
			h.Namespace, h.Name, h.SNI, h.SourceCluster = long[:maxLabel], long[:maxLabel], long, long
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sampleHeader()
			tt.edit(&h)
			b, err := h.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			var got Header
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if got != h {
				t.Fatalf("got %+v, want %+v", got, h)
			}
			got, err = readHeader(bytes.NewReader(append(b, "trailing stream bytes"...)))
			if err != nil || got != h {
				t.Fatalf("readHeader: %+v, %v", got, err)
			}
		})
	}
}

func TestHeaderZoneDropped(t *testing.T) {
	h := sampleHeader()
	h.Client = netip.MustParseAddrPort("[fe80::1%eth0]:80")
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got Header
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("[fe80::1]:80"); got.Client != want {
		t.Fatalf("client %v, want %v", got.Client, want)
	}
}

func TestHeaderEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Header)
	}{
		{name: "no namespace", edit: func(h *Header) { h.Namespace = "" }},
		{name: "no name", edit: func(h *Header) { h.Name = "" }},
		{name: "no port", edit: func(h *Header) { h.Port = 0 }},
		{name: "long name", edit: func(h *Header) { h.Name = strings.Repeat("x", maxLabel+1) }},
		{name: "upper case", edit: func(h *Header) { h.Namespace = "Default" }},
		{name: "dotted", edit: func(h *Header) { h.Name = "reviews.default" }},
		{name: "long sni", edit: func(h *Header) { h.SNI = strings.Repeat("x", 256) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sampleHeader()
			tt.edit(&h)
			if _, err := h.AppendBinary(nil); !errors.Is(err, ErrBadHeader) {
				t.Fatalf("err %v, want ErrBadHeader", err)
			}
		})
	}
}

func TestHeaderDecodeErrors(t *testing.T) {
	good, err := sampleHeader().AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
		// onStream is true when the bytes are fine as the start of a stream:
		// readHeader stops at the header's end.
		onStream bool
	}{
		{name: "empty", in: nil, want: ErrBadHeader},
		{name: "version", in: append([]byte{2}, good[1:]...), want: ErrUnsupportedVersion},
		{name: "truncated", in: good[:len(good)-1], want: ErrBadHeader},
		{name: "trailing", in: append(append([]byte{}, good...), 0), want: ErrBadHeader, onStream: true},
		{name: "over cap", in: []byte{HeaderVersion, 0xff, 0xff}, want: ErrBadHeader},
		{name: "bad family", in: []byte{1, 0, 8, 1, 'a', 1, 'b', 0, 1, 0, 0, 9}, want: ErrBadHeader},
		{name: "not a label", in: []byte{1, 0, 8, 1, 'A', 1, 'b', 0, 1, 0, 0, 0}, want: ErrBadHeader},
		{name: "port 0", in: []byte{1, 0, 8, 1, 'a', 1, 'b', 0, 0, 0, 0, 0}, want: ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			if err := h.UnmarshalBinary(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if _, err := readHeader(bytes.NewReader(tt.in)); (err == nil) != tt.onStream {
				t.Fatalf("readHeader: %v", err)
			}
		})
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for c := CodeOK; c <= CodePenalty; c++ {
		got, err := readStatus(bytes.NewReader(appendStatus(nil, c)))
		if err != nil || got != c {
			t.Fatalf("code %v: got %v, %v", c, got, err)
		}
	}
	if _, err := readStatus(bytes.NewReader([]byte{9, 0})); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err %v, want ErrUnsupportedVersion", err)
	}
}

func TestErrorCodeString(t *testing.T) {
	tests := []struct {
		code ErrorCode
		want string
	}{
		{CodeOK, "ok"},
		{CodeNotExported, "not_exported"},
		{CodeShuttingDown, "shutting_down"},
		{ErrorCode(200), "code_200"},
	}
	for _, tt := range tests {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("%d: %q, want %q", uint64(tt.code), got, tt.want)
		}
	}
}
