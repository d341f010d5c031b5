package sni

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"testing/iotest"
	"time"
)

func TestPeekCaptured(t *testing.T) {
	h1x := []string{"h2", "http/1.1"}
	tests := []struct {
		name     string
		wantSNI  string
		wantALPN []string
		wantVers []uint16
		wantECH  bool
		wantErr  error
	}{
		{name: "go-mlkem", wantSNI: "svc.example.test", wantALPN: h1x, wantVers: []uint16{0x0304, 0x0303}},
		{name: "go-x25519", wantSNI: "svc.example.test", wantALPN: h1x, wantVers: []uint16{0x0304, 0x0303}},
		{name: "go-nosni", wantVers: []uint16{0x0304, 0x0303}, wantErr: ErrNoSNI},
		{name: "openssl", wantSNI: "svc.example.test", wantALPN: h1x, wantVers: []uint16{0x0304, 0x0303, 0x0302, 0x0301}},
		{name: "curl", wantSNI: "svc.example.test", wantALPN: h1x, wantVers: []uint16{0x0304, 0x0303, 0x0302, 0x0301}},
		// Chromium sends a GREASE version (RFC 8701) and a GREASE ECH outer
		// extension when it has no ECH config for the name.
		{name: "chromium", wantSNI: "svc.example.test", wantALPN: h1x, wantVers: []uint16{0x2a2a, 0x0304, 0x0303}, wantECH: true},
	}
	if len(tests) != len(capturedNames(t)) {
		t.Fatalf("%d cases for hellos %q", len(tests), capturedNames(t))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := captured(t, tt.name)
			readers := map[string]io.Reader{
				"whole":    bytes.NewReader(raw),
				"one-byte": iotest.OneByteReader(bytes.NewReader(raw)),
			}
			for rname, r := range readers {
				h, err := Peek(r, 0)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("%s: err %v, want %v", rname, err, tt.wantErr)
				}
				if h.ServerName != tt.wantSNI || !slices.Equal(h.ALPN, tt.wantALPN) ||
					!slices.Equal(h.Versions, tt.wantVers) || h.ECHOuter != tt.wantECH {
					t.Errorf("%s: got %q %q %#x ech=%v, want %q %q %#x ech=%v", rname,
						h.ServerName, h.ALPN, h.Versions, h.ECHOuter,
						tt.wantSNI, tt.wantALPN, tt.wantVers, tt.wantECH)
				}
				if !bytes.Equal(h.Raw, raw) {
					t.Errorf("%s: Raw is %d bytes, want all %d", rname, len(h.Raw), len(raw))
				}
			}
			h, err := Peek(bytes.NewReader(raw), 0)
			checkOracle(t, raw, h, err)
		})
	}
}

// TestPeekFragmented re-splits real hellos into many records (RFC 8446 §5.1)
// and reads them one byte at a time, with trailing bytes that must stay
// unread.
func TestPeekFragmented(t *testing.T) {
	trailer := []byte("\x17\x03\x03\x00\x05after")
	for _, name := range capturedNames(t) {
		msg := message(t, captured(t, name))
		want, wantErr := Peek(bytes.NewReader(records(msg, maxPlaintext)), 0)
		for _, size := range []int{1, 7, 100, 1000} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				recs := records(msg, size)
				r := bytes.NewReader(append(slices.Clip(recs), trailer...))
				h, err := Peek(iotest.OneByteReader(r), 64<<10)
				if Reason(err) != Reason(wantErr) || h.ServerName != want.ServerName ||
					!slices.Equal(h.ALPN, want.ALPN) || !slices.Equal(h.Versions, want.Versions) {
					t.Fatalf("got %q %q %#x %v, want %q %q %#x %v", h.ServerName, h.ALPN, h.Versions, err,
						want.ServerName, want.ALPN, want.Versions, wantErr)
				}
				if !bytes.Equal(h.Raw, recs) {
					t.Fatalf("Raw is %d bytes, want the %d bytes of records", len(h.Raw), len(recs))
				}
				if rest, _ := io.ReadAll(r); !bytes.Equal(rest, trailer) {
					t.Fatalf("left %q unread, want %q", rest, trailer)
				}
				checkOracle(t, recs, h, err)
			})
		}
	}
}

func TestPeekErrors(t *testing.T) {
	mlkem := captured(t, "go-mlkem")
	frag := records(message(t, mlkem), 100)
	big := records(handshake(helloBody(sniExt("big.example"), ext{typ: 21, data: make([]byte, 17000)})), maxPlaintext)
	smallHello := handshake(helloBody(sniExt("a.example")))
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		wantRaw int // bytes read; -1 means all of in
	}{
		{name: "empty", in: nil, wantErr: ErrTruncated, wantRaw: 0},
		{name: "http", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrNotTLS, wantRaw: 5},
		{name: "sslv2 hello", in: []byte("\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"), wantErr: ErrNotTLS, wantRaw: 5},
		{name: "alert record", in: []byte("\x15\x03\x01\x00\x02\x02\x28"), wantErr: ErrNotTLS, wantRaw: 5},
		{name: "record major 2", in: []byte("\x16\x02\x00\x00\x04\x01\x00\x00\x00"), wantErr: ErrNotTLS, wantRaw: 5},
		{name: "cut in header", in: mlkem[:3], wantErr: ErrTruncated, wantRaw: -1},
		{name: "cut after header", in: mlkem[:5], wantErr: ErrTruncated, wantRaw: -1},
		{name: "cut mid body", in: mlkem[:700], wantErr: ErrTruncated, wantRaw: -1},
		{name: "cut mid second record", in: frag[:150], wantErr: ErrTruncated, wantRaw: -1},
		{name: "cut between records", in: frag[:105], wantErr: ErrTruncated, wantRaw: -1},
		{name: "cap below first record", in: mlkem, max: 100, wantErr: ErrTooLarge, wantRaw: 5},
		{name: "cap below fragmented hello", in: frag, max: 1000, wantErr: ErrTooLarge, wantRaw: 105},
		{name: "cap one byte short", in: mlkem, max: len(mlkem) - 1, wantErr: ErrTooLarge, wantRaw: 5},
		{name: "over 16 KiB", in: big, wantErr: ErrTooLarge, wantRaw: 5},
		{name: "zero-length record", in: []byte("\x16\x03\x01\x00\x00"), wantErr: ErrMalformed, wantRaw: -1},
		{name: "record over 2^14", in: []byte("\x16\x03\x01\x40\x01"), wantErr: ErrMalformed, wantRaw: -1},
		{name: "server hello", in: records([]byte("\x02\x00\x00\x00"), 100), wantErr: ErrMalformed, wantRaw: -1},
		{name: "interleaved alert", in: append(records(smallHello[:10], 10), "\x15\x03\x03\x00\x02\x01\x00"...), wantErr: ErrMalformed, wantRaw: 20},
		{name: "interleaved ccs", in: append(records(smallHello[:2], 2), "\x14\x03\x03\x00\x01\x01"...), wantErr: ErrMalformed, wantRaw: 12},
		{name: "bad fixed fields", in: records(handshake([]byte{3, 3, 0}), 100), wantErr: ErrMalformed, wantRaw: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			h, err := Peek(r, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			wantRaw := tt.wantRaw
			if wantRaw < 0 {
				wantRaw = len(tt.in)
			}
			if h == nil || !bytes.Equal(h.Raw, tt.in[:wantRaw]) {
				t.Fatalf("Raw %x, want the first %d bytes", h.Raw, wantRaw)
			}
			if consumed := len(tt.in) - r.Len(); consumed != wantRaw {
				t.Fatalf("consumed %d bytes, Raw has %d", consumed, wantRaw)
			}
			checkOracle(t, tt.in, h, err)
		})
	}
}

func TestPeekLargeWithRaisedCap(t *testing.T) {
	big := records(handshake(helloBody(sniExt("big.example"), ext{typ: 21, data: make([]byte, 17000)})), maxPlaintext)
	h, err := Peek(bytes.NewReader(big), 64<<10)
	if err != nil || h.ServerName != "big.example" || len(h.Raw) != len(big) {
		t.Fatalf("got %q, %d bytes, %v", h.ServerName, len(h.Raw), err)
	}
	checkOracle(t, big, h, err)
}

// TestPeekTCP sends a hello over loopback TCP one byte per write with
// Nagle off, so the reader sees it in many segments, and checks Peek leaves
// the following bytes on the socket.
func TestPeekTCP(t *testing.T) {
	hello := captured(t, "chromium")
	trailer := []byte("then application data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent := make(chan error, 1)
	go func() { sent <- writeBytewise(ln.Addr().String(), append(slices.Clip(hello), trailer...)) }()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h, err := Peek(c, 0)
	if err != nil || h.ServerName != "svc.example.test" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("got %q, %d bytes, %v", h.ServerName, len(h.Raw), err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(rest, trailer) {
		t.Fatalf("rest %q, %v; want %q", rest, err, trailer)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

func writeBytewise(addr string, b []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.(*net.TCPConn).SetNoDelay(true); err != nil {
		return err
	}
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return c.(*net.TCPConn).CloseWrite()
}

func TestPeekTimeout(t *testing.T) {
	t.Run("deadline passed", func(t *testing.T) {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		if err := server.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		h, err := Peek(server, 0)
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) || len(h.Raw) != 0 {
			t.Fatalf("err %v, Raw %x", err, h.Raw)
		}
	})
	t.Run("deadline mid header", func(t *testing.T) {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		wrote := make(chan error, 1)
		go func() {
			// net.Pipe writes return once the reader has taken the bytes.
			_, err := client.Write([]byte{22, 3, 1})
			if err == nil {
				err = server.SetReadDeadline(time.Now().Add(-time.Second))
			}
			wrote <- err
		}()
		h, err := Peek(server, 0)
		if werr := <-wrote; werr != nil {
			t.Fatal(werr)
		}
		if !errors.Is(err, ErrTimeout) || !bytes.Equal(h.Raw, []byte{22, 3, 1}) {
			t.Fatalf("err %v, Raw %x", err, h.Raw)
		}
	})
	t.Run("net.Error timeout", func(t *testing.T) {
		_, err := Peek(iotest.ErrReader(timeoutError{}), 0)
		if !errors.Is(err, ErrTimeout) || Reason(err) != "timeout" {
			t.Fatalf("err %v", err)
		}
	})
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrNotTLS, "not_tls"},
		{fmt.Errorf("%w: %w: x", ErrNotTLS, errRecordLayer), "not_tls"},
		{fmt.Errorf("%w: no host_name", ErrNoSNI), "no_sni"},
		{ErrTruncated, "truncated"},
		{ErrTooLarge, "too_large"},
		{fmt.Errorf("%w: %w", ErrTimeout, os.ErrDeadlineExceeded), "timeout"},
		{ErrMalformed, "malformed"},
		{errors.New("connection reset by peer"), "io_error"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
	t.Run("reader error", func(t *testing.T) {
		_, err := Peek(iotest.ErrReader(net.ErrClosed), 0)
		if !errors.Is(err, net.ErrClosed) || Reason(err) != "io_error" {
			t.Fatalf("err %v, reason %q", err, Reason(err))
		}
	})
}

func BenchmarkPeek(b *testing.B) {
	hello := captured(b, "go-mlkem")
	r := bytes.NewReader(hello)
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(hello)
		if _, err := Peek(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
