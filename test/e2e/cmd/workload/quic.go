//go:build e2e

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ewgw/ewgw/internal/tunnel"
)

// quicReport is what `workload quic` observed.
type quicReport struct {
	// Handshake: the client's side of the handshake completed. In TLS 1.3
	// the client finishes before the server has checked its certificate,
	// so this alone proves nothing.
	Handshake bool `json:"handshake"`
	// Closed: the server closed the connection within the probe's time.
	Closed bool `json:"closed"`
	// Stream: a stream opened and the server answered a header with OK.
	Stream bool   `json:"stream"`
	Error  string `json:"error,omitempty"`
}

// quicProbe plays an unauthenticated client of the peering surface: a
// QUIC handshake with the tunnel's ALPN and no client certificate, then a
// stream header naming a service. It reports how far it got; a gateway
// must stop it at the handshake.
func quicProbe(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quic", flag.ContinueOnError)
	addr := fs.String("addr", "", "the gateway's peering address, host:port (UDP)")
	ns := fs.String("namespace", "shop", "namespace of the service the header names")
	name := fs.String("name", "web", "service the header names")
	port := fs.Uint("port", 443, "service port the header names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep := probeQUIC(ctx, *addr, tunnel.Header{Namespace: *ns, Name: *name, Port: uint16(*port), SourceCluster: "internet"})
	return json.NewEncoder(stdout).Encode(rep)
}

func probeQUIC(ctx context.Context, addr string, h tunnel.Header) (rep quicReport) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13}
	qc, err := quic.DialAddr(ctx, addr, cfg, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer qc.CloseWithError(0, "")
	rep.Handshake = true
	defer func() {
		select {
		case <-qc.Context().Done():
			rep.Closed = true
			if rep.Error == "" {
				rep.Error = context.Cause(qc.Context()).Error()
			}
		case <-time.After(2 * time.Second):
		}
	}()
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(b); err != nil {
		rep.Error = err.Error()
		return rep
	}
	// The status frame: the header version, then the code (0: accepted).
	status := make([]byte, 2)
	if _, err := io.ReadFull(s, status); err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Stream = status[0] == tunnel.HeaderVersion && tunnel.ErrorCode(status[1]) == tunnel.CodeOK
	return rep
}
