package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestAnonymousClientRefused: a QUIC client with the tunnel's ALPN and no
// certificate, as anyone on the internet can be, never gets a stream: the
// server closes the connection at the handshake and counts it (no_cert),
// and the header it tries to send reaches no handler.
func TestAnonymousClientRefused(t *testing.T) {
	ca := newCA(t, "td")
	cfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	handled := make(chan Header, 1)
	cfg.Handler = HandlerFunc(func(_ context.Context, in *Inbound) { handled <- in.Header })
	n := start(t, cfg, bindUDP(t, "127.0.0.1:0"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, n.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}, nil)
	if err == nil {
		defer qc.CloseWithError(0, "")
		// The client's side of a TLS 1.3 handshake ends before the server
		// has checked its certificate; the server's close follows.
		if s, err := qc.OpenStreamSync(ctx); err == nil {
			b, _ := Header{Namespace: "shop", Name: "web", Port: 443}.AppendBinary(nil)
			s.Write(b)
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadAll(s)
		}
		select {
		case <-qc.Context().Done():
		case <-ctx.Done():
			t.Fatal("the server kept an anonymous connection open")
		}
	}
	select {
	case h := <-handled:
		t.Fatalf("an anonymous client's stream reached the handler: %+v", h)
	default:
	}
	eventually(t, "no_cert counted", func() bool {
		return counter(t, n.reg, "ewgw_tunnel_handshake_failures_total", reasonNoCert) == 1
	})
}

// TestAnonymousTCPClient: on the TCP transport, a TLS client that does not
// offer the peering protocol (any scanner, browser or curl) is refused
// before the server shows its certificate, and counted (alpn); one that
// offers it but has no certificate is refused at the handshake (no_cert)
// and never gets a stream.
func TestAnonymousTCPClient(t *testing.T) {
	ca := newCA(t, "td")
	cfg := testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	cfg.Handler = HandlerFunc(func(_ context.Context, in *Inbound) { t.Errorf("a stream reached the handler: %+v", in.Header) })
	n := start(t, cfg, bindUDP(t, "127.0.0.1:0"))
	for _, tt := range []struct {
		alpn   []string
		reason string
	}{
		{nil, reasonALPN},
		{[]string{"h2", "http/1.1"}, reasonALPN},
		{[]string{ALPN}, reasonNoCert},
	} {
		c, err := tls.Dial("tcp4", n.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.alpn, MinVersion: tls.VersionTLS13})
		if err == nil {
			// TLS 1.3: the client finishes before the server checked it.
			if len(c.ConnectionState().PeerCertificates) > 0 && tt.reason == reasonALPN {
				t.Errorf("ALPN %v: the server showed its certificate", tt.alpn)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c); err == nil {
				t.Errorf("ALPN %v: the connection ended cleanly, want the server's alert", tt.alpn)
			}
			c.Close()
		}
		eventually(t, "the refusal counted as "+tt.reason, func() bool {
			return counter(t, n.reg, "ewgw_tunnel_handshake_failures_total", tt.reason) >= 1
		})
	}
}
