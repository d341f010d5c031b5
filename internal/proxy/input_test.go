package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/sni"
)

// captureHello returns the ClientHello a Go client sends with cfg.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, cfg).Handshake()
		a.Close()
	}()
	defer b.Close()
	hello, err := sni.Peek(b, 0)
	if err != nil && !errors.Is(err, sni.ErrNoSNI) {
		t.Fatal(err)
	}
	return hello.Raw
}

func TestRejectedInput(t *testing.T) {
	mlkem := captureHello(t, &tls.Config{ServerName: webName, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	if len(mlkem) < 1200 { // the ML-KEM-768 key share alone is 1,184 bytes
		t.Fatalf("ML-KEM hello is only %d bytes", len(mlkem))
	}
	plain := captureHello(t, &tls.Config{ServerName: "abcdefgh"})
	tests := []struct {
		name   string
		cfg    func(*Config)
		send   func(c net.Conn) error
		reason string
	}{
		{name: "plain HTTP", reason: "not_tls", send: writes([]byte("GET / HTTP/1.1\r\nHost: web\r\n\r\n"))},
		{name: "SSLv2 hello", reason: "not_tls", send: writes([]byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10})},
		{name: "truncated hello", reason: "truncated", send: writes(plain[:100])},
		{name: "hello over the cap", reason: "too_large", send: writes(mlkem),
			cfg: func(c *Config) { c.HelloMaxSize = 1024 }},
		{name: "no SNI", reason: "no_sni", send: writes(captureHello(t, &tls.Config{InsecureSkipVerify: true}))},
		{name: "unknown SNI", reason: "unknown_service",
			send: writes(captureHello(t, &tls.Config{ServerName: "nope.default.svc.cluster.local"}))},
		{name: "unknown name form", reason: "unknown_name",
			send: writes(captureHello(t, &tls.Config{ServerName: "www.example.com"}))},
		{name: "IP literal", reason: "ip_literal",
			send: writes(bytes.Replace(plain, []byte("abcdefgh"), []byte("10.0.0.1"), 1))},
		{name: "one byte per tick", reason: "timeout", send: trickle(mlkem, 20*time.Millisecond),
			cfg: func(c *Config) { c.HelloTimeout = 200 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var wg sync.WaitGroup
			wg.Go(func() { tt.send(c) })
			// A clean close: EOF, not a reset.
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("read until close = %v, want a clean EOF", err)
			}
			c.Close()
			wg.Wait()
			if n := h.dials.Load(); n != 0 {
				t.Fatalf("proxy dialled %d times for a rejected connection", n)
			}
			if got := h.count(resultRejected, tt.reason); got != 1 {
				t.Fatalf("rejected{reason=%q} = %v, want 1", tt.reason, got)
			}
		})
	}
}

// writes sends b, then half-closes.
func writes(b []byte) func(net.Conn) error {
	return func(c net.Conn) error {
		if _, err := c.Write(b); err != nil {
			return err
		}
		return c.(*net.TCPConn).CloseWrite()
	}
}

// trickle sends b one byte per tick until a write fails, like a slowloris
// client.
func trickle(b []byte, tick time.Duration) func(net.Conn) error {
	return func(c net.Conn) error {
		t := time.NewTicker(tick)
		defer t.Stop()
		for i := range b {
			if _, err := c.Write(b[i : i+1]); err != nil {
				return err
			}
			<-t.C
		}
		return nil
	}
}

func TestAcceptedOddInput(t *testing.T) {
	tests := []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{name: "one-byte segments", wrap: func(c net.Conn) net.Conn { return &byteWriter{Conn: c} }},
		{name: "hello in 64-byte records", wrap: func(c net.Conn) net.Conn { return &recordSplitter{Conn: c, size: 64} }},
		{name: "hello in 1-byte records", wrap: func(c net.Conn) net.Conn { return &recordSplitter{Conn: c, size: 1} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			raw, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(tt.wrap(raw), h.clientTLS(webName))
			defer c.Close()
			req, _ := http.NewRequest("GET", "https://"+webName+"/", nil)
			req.Close = true
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(body, []byte("hello from web")) {
				t.Fatalf("body = %q", body)
			}
		})
	}
}

// byteWriter writes one byte per write(2); with TCP_NODELAY (Go's default)
// the ClientHello crosses the network in ~1,800 one-byte segments.
type byteWriter struct{ net.Conn }

func (w *byteWriter) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := w.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// recordSplitter re-frames the first write (the ClientHello record) into
// handshake records of at most size bytes (RFC 8446 §5.1 allows a handshake
// message to span records).
type recordSplitter struct {
	net.Conn
	size int
	done bool
}

func (r *recordSplitter) Write(b []byte) (int, error) {
	if r.done {
		return r.Conn.Write(b)
	}
	r.done = true
	if len(b) < 5 || b[0] != 22 {
		return 0, errors.New("first write is not a handshake record")
	}
	hdr, body := b[:5], b[5:]
	var out []byte
	for len(body) > 0 {
		n := min(r.size, len(body))
		out = append(out, hdr[0], hdr[1], hdr[2], byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	if _, err := r.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
