package sni

// Fuzz targets, each run alone by the Makefile's fuzz-smoke as
//
//	go test ./internal/sni -run '^$' -fuzz '^FuzzPeek$' -fuzztime 20s
//	go test ./internal/sni -run '^$' -fuzz '^FuzzParseHello$' -fuzztime 20s
//
// FuzzPeek takes raw bytes from a client, exercising the record layer and
// the parser; FuzzParseHello takes one ClientHello body, always well framed,
// to reach deeper into the parser.
//
// Both check Peek against crypto/tls (checkOracle): wherever Go's server
// reads a ClientHello, Peek must read the same server name, ALPN and
// versions. Seeds are the captured hellos in testdata/hellos; crashers go to
// testdata/fuzz/<Target>/.

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"
)

// fuzzMax is the cap for fuzzing: above anything crypto/tls accepts
// (a 64 KiB handshake message), so the cap never explains a difference.
const fuzzMax = 1 << 20

func FuzzPeek(f *testing.F) {
	for _, name := range capturedNames(f) {
		recs := captured(f, name)
		f.Add(recs)
		f.Add(records(message(f, recs), 200))
		f.Add(recs[:len(recs)/2])
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: svc.example\r\n\r\n"))
	f.Add([]byte("\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"))
	f.Add(records(handshake(helloBody(sniExt("a.example"), ext{extECH, []byte{0}})), 9))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := Peek(r, fuzzMax)
		if h == nil {
			t.Fatalf("nil hello with %v", err)
		}
		consumed := len(data) - r.Len()
		if !bytes.Equal(h.Raw, data[:consumed]) {
			t.Fatalf("Raw is %d bytes, but %d were consumed", len(h.Raw), consumed)
		}
		if err == nil && h.ServerName == "" || errors.Is(err, ErrNoSNI) && h.ServerName != "" {
			t.Fatalf("server name %q with %v", h.ServerName, err)
		}
		if Reason(err) == "io_error" {
			t.Fatalf("unexpected error from a bytes.Reader: %v", err)
		}
		// Read sizes must not matter.
		h1, err1 := Peek(iotest.OneByteReader(bytes.NewReader(data)), fuzzMax)
		if Reason(err1) != Reason(err) || h1.ServerName != h.ServerName || !bytes.Equal(h1.Raw, h.Raw) {
			t.Fatalf("one-byte reads: %q %v, %d bytes; whole: %q %v, %d bytes",
				h1.ServerName, err1, len(h1.Raw), h.ServerName, err, len(h.Raw))
		}
		// A cap never lets Peek read past it.
		if capped, _ := Peek(bytes.NewReader(data), len(data)/2+1); len(capped.Raw) > len(data)/2+1 {
			t.Fatalf("read %d bytes under a cap of %d", len(capped.Raw), len(data)/2+1)
		}
		checkOracle(t, data, h, err)
	})
}

func FuzzParseHello(f *testing.F) {
	for _, name := range capturedNames(f) {
		f.Add(message(f, captured(f, name))[handshakeHeaderLen:])
	}
	f.Add(helloBody(sniExt("a.example", "b.example")))
	f.Add(helloBody(sniExt("svc.example."), ext{extALPN, []byte{0, 3, 2, 'h', '2'}}))
	f.Add(helloBody(ext{extSupportedVersions, []byte{2, 3, 4}}, ext{extECH, []byte{0}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := parseHello(body)
		switch {
		case err == nil || errors.Is(err, ErrNoSNI):
			if h == nil || (err == nil) == (h.ServerName == "") {
				t.Fatalf("hello %+v with %v", h, err)
			}
		case !errors.Is(err, ErrMalformed):
			t.Fatalf("parseHello: %v", err)
		}
		recs := records(handshake(body), maxPlaintext)
		ph, perr := Peek(bytes.NewReader(recs), fuzzMax)
		if Reason(perr) != Reason(err) || h != nil && ph.ServerName != h.ServerName {
			t.Fatalf("Peek got %q %v; parseHello %v", ph.ServerName, perr, err)
		}
		checkOracle(t, recs, ph, perr)
	})
}
