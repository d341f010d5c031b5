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
