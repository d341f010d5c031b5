package sni

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

func TestParseHello(t *testing.T) {
	alpn := func(protos ...string) ext {
		var b cryptobyte.Builder
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, p := range protos {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
			}
		})
		return ext{extALPN, b.BytesOrPanic()}
	}
	hostAnd := func(typ uint8, name string) ext {
		// A host_name plus an entry of another NameType.
		e := sniExt("a.example", name)
		e.data[2+1+2+len("a.example")] = typ
		return e
	}
	noExts := helloBody()[:2+32+1+4+2] // fixed fields only, no extensions block
	// many returns a server_name and 40 more distinct extensions, more than
	// the duplicate check keeps without allocating, then extra.
	many := func(extra ...ext) []ext {
		es := []ext{sniExt("m.example")}
		for i := range 40 {
			es = append(es, ext{uint16(0x1000 + i), nil})
		}
		return append(es, extra...)
	}
	tests := []struct {
		name     string
		body     []byte
		wantSNI  string
		wantALPN []string
		wantVers []uint16
		wantECH  bool
		wantErr  error
	}{
		{name: "name only", body: helloBody(sniExt("svc.example")), wantSNI: "svc.example", wantVers: []uint16{0x0303}},
		{name: "case kept", body: helloBody(sniExt("Svc.Example")), wantSNI: "Svc.Example", wantVers: []uint16{0x0303}},
		{name: "ip literal as sent", body: helloBody(sniExt("10.0.0.1")), wantSNI: "10.0.0.1", wantVers: []uint16{0x0303}},
		{name: "non-ascii as sent", body: helloBody(sniExt("bücher.example")), wantSNI: "bücher.example", wantVers: []uint16{0x0303}},
		{name: "alpn and versions",
			body:    helloBody(alpn("h2", "http/1.1"), sniExt("x.example"), ext{extSupportedVersions, []byte{4, 3, 4, 3, 3}}),
			wantSNI: "x.example", wantALPN: []string{"h2", "http/1.1"}, wantVers: []uint16{0x0304, 0x0303}},
		{name: "other name type skipped", body: helloBody(hostAnd(7, "b.example")), wantSNI: "a.example", wantVers: []uint16{0x0303}},
		{name: "ech outer", body: helloBody(sniExt("public.example"), ext{extECH, []byte{0, 0, 1, 0, 1, 9, 0, 0, 0, 0}}),
			wantSNI: "public.example", wantVers: []uint16{0x0303}, wantECH: true},
		{name: "ech inner", body: helloBody(sniExt("secret.example"), ext{extECH, []byte{1}}),
			wantSNI: "secret.example", wantVers: []uint16{0x0303}},
		{name: "ech empty", body: helloBody(sniExt("e.example"), ext{extECH, nil}), wantSNI: "e.example", wantVers: []uint16{0x0303}},
		{name: "unknown extensions skipped", body: helloBody(ext{0x0a0a, nil}, ext{21, make([]byte, 300)}, sniExt("p.example")),
			wantSNI: "p.example", wantVers: []uint16{0x0303}},
		{name: "no extensions", body: noExts, wantVers: []uint16{0x0303}, wantErr: ErrNoSNI},
		{name: "empty extensions", body: helloBody(), wantVers: []uint16{0x0303}, wantErr: ErrNoSNI},
		{name: "only other name type", body: helloBody(ext{extServerName, []byte{0, 4, 1, 0, 1, 'x'}}), wantVers: []uint16{0x0303}, wantErr: ErrNoSNI},
		{name: "trailing dot", body: helloBody(sniExt("svc.example.")), wantErr: ErrMalformed},
		{name: "two host names", body: helloBody(sniExt("a.example", "b.example")), wantErr: ErrMalformed},
		{name: "empty host name", body: helloBody(sniExt("")), wantErr: ErrMalformed},
		{name: "empty name list", body: helloBody(ext{extServerName, []byte{0, 0}}), wantErr: ErrMalformed},
		{name: "name list overrun", body: helloBody(ext{extServerName, []byte{0, 9, 0, 0, 1, 'x'}}), wantErr: ErrMalformed},
		{name: "bytes after name list", body: helloBody(ext{extServerName, []byte{0, 4, 0, 0, 1, 'x', 0}}), wantErr: ErrMalformed},
		{name: "duplicate extension", body: helloBody(sniExt("a.example"), ext{21, nil}, ext{21, nil}), wantErr: ErrMalformed},
		{name: "duplicate server_name", body: helloBody(sniExt("a.example"), sniExt("b.example")), wantErr: ErrMalformed},
		{name: "41 extensions", body: helloBody(many()...), wantSNI: "m.example", wantVers: []uint16{0x0303}},
		{name: "duplicate after 41", body: helloBody(many(ext{0x1000, nil})...), wantErr: ErrMalformed},
		{name: "empty alpn name", body: helloBody(sniExt("a.example"), alpn("h2", "")), wantErr: ErrMalformed},
		{name: "empty alpn list", body: helloBody(sniExt("a.example"), alpn()), wantErr: ErrMalformed},
		{name: "odd versions", body: helloBody(sniExt("a.example"), ext{extSupportedVersions, []byte{3, 3, 4, 3}}), wantErr: ErrMalformed},
		{name: "empty versions", body: helloBody(sniExt("a.example"), ext{extSupportedVersions, []byte{0}}), wantErr: ErrMalformed},
		{name: "bytes after extensions", body: append(helloBody(sniExt("a.example")), 0), wantErr: ErrMalformed},
		{name: "cut in random", body: helloBody(sniExt("a.example"))[:20], wantErr: ErrMalformed},
		{name: "empty body", body: nil, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := records(handshake(tt.body), 100)
			r := bytes.NewReader(recs)
			h, err := Peek(r, 0)
			if !errors.Is(err, tt.wantErr) || tt.wantErr == nil && err != nil {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if h.ServerName != tt.wantSNI || !slices.Equal(h.ALPN, tt.wantALPN) ||
				!slices.Equal(h.Versions, tt.wantVers) || h.ECHOuter != tt.wantECH {
				t.Errorf("got %q %q %#x ech=%v, want %q %q %#x ech=%v",
					h.ServerName, h.ALPN, h.Versions, h.ECHOuter,
					tt.wantSNI, tt.wantALPN, tt.wantVers, tt.wantECH)
			}
			if !bytes.Equal(h.Raw, recs) || r.Len() != 0 {
				t.Errorf("Raw is %d of %d bytes, %d unread", len(h.Raw), len(recs), r.Len())
			}
			checkOracle(t, recs, h, err)
		})
	}
}
