package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ewgw/ewgw/internal/tunnel"
)

// The scripted hostile peer: cluster C's real SVID, real QUIC, and the
// control protocol written by hand (internal/tunnel's control.go gives the
// format), so it can send what no honest gateway would.

// controlVersion is the control protocol version the hello carries.
const controlVersion = 3

// Control message kinds.
const (
	kindHello = 1
	kindDelta = 4
	kindLease = 5
)

// export is one catalogue entry: a service and its ports' ready counts.
type export struct {
	namespace, name string
	ports           map[uint16]uint32
}

// hello is the hello C sends.
type hello struct {
	cluster, region string
	exports         []export
}

// hostAddr is the loopback address the hostile peer dials from, apart from
// the good peer (127.0.0.1) and the floods.
var hostAddr = net.IPv4(127, 0, 0, 66)

// hostile holds the hostile peer's sockets and TLS config.
type hostile struct {
	tr     *quic.Transport
	tls    *tls.Config
	victim *net.UDPAddr
}

// newHostile binds C's socket and loads its SVID.
func newHostile(e *setup, victim *gateway) (*hostile, error) {
	dir := filepath.Join(e.certs, clusterC)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid-key.pem"))
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp4", victim.addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: hostAddr})
	if err != nil {
		return nil, err
	}
	return &hostile{
		tr: &quic.Transport{Conn: udp},
		// C does not care whom it attacks: it skips checking B's SVID.
		tls: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13},
		victim: ua,
	}, nil
}

func (h *hostile) close() { h.tr.Close(); h.tr.Conn.Close() }

// conn is one of C's connections to the victim.
type conn struct {
	qc  *quic.Conn
	ctl *quic.Stream
	mu  sync.Mutex // serializes writes on ctl
}

// dial makes a QUIC connection to the victim; the handshake passes, as C
// is allowed.
func (h *hostile) dial(ctx context.Context) (*conn, error) {
	qc, err := h.tr.Dial(ctx, h.victim, h.tls, &quic.Config{HandshakeIdleTimeout: 5 * time.Second,
		MaxIdleTimeout: time.Minute, KeepAlivePeriod: time.Second})
	if err != nil {
		return nil, err
	}
	return &conn{qc: qc}, nil
}

// hello opens the control stream, sends hl and waits for the victim's
// hello; then it discards whatever the victim sends on the control stream.
func (c *conn) hello(ctx context.Context, hl hello) error {
	ctl, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	c.ctl = ctl
	if err := c.send(encodeHello(hl)); err != nil {
		return err
	}
	ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	var prefix [4]byte
	if _, err := io.ReadFull(ctl, prefix[:]); err != nil {
		return err
	}
	if prefix[0] != kindHello {
		return fmt.Errorf("victim sent kind %d first", prefix[0])
	}
	ctl.SetReadDeadline(time.Time{})
	go io.Copy(io.Discard, ctl)
	return nil
}

func (c *conn) send(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.ctl.Write(b)
	return err
}

// keepLease sends a lease message every second until ctx ends or the
// connection does, as an honest peer would, so only the attack can end the
// connection.
func (c *conn) keepLease(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.qc.Context().Done():
			return
		case <-t.C:
			_ = c.send(frame(kindLease, nil))
		}
	}
}

func (c *conn) close() { c.qc.CloseWithError(0, "") }

// closeCode returns the code the victim closed qc with, or why there is
// none.
func closeCode(err error) string {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return tunnel.ErrorCode(ae.ErrorCode).String()
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote {
		return "transport " + te.ErrorCode.String()
	}
	if err == nil {
		return "none"
	}
	return "local: " + err.Error()
}

// encodeHello encodes a hello in one part, with lease 10 s.
func encodeHello(h hello) []byte {
	b := []byte{controlVersion}
	for _, s := range []string{h.cluster, h.region, "", "hostile"} {
		b = str8(b, s)
	}
	b = binary.BigEndian.AppendUint64(b, 1)      // instance
	b = binary.BigEndian.AppendUint64(b, 1)      // generation
	b = binary.BigEndian.AppendUint32(b, 10_000) // lease, ms
	b = append(b, 0)                             // no more parts
	b = exportList(b, h.exports)
	return frame(kindHello, b)
}

// encodeDelta encodes a delta in one part from generation base to base+1
// that upserts exports and removes nothing.
func encodeDelta(base uint64, exports []export) []byte {
	b := binary.BigEndian.AppendUint64(nil, base)
	b = binary.BigEndian.AppendUint64(b, base+1)
	b = append(b, 0) // no more parts
	b = exportList(b, exports)
	b = append(b, 0, 0, 0) // no removals
	return frame(kindDelta, b)
}

func frame(kind byte, body []byte) []byte {
	n := len(body)
	return append([]byte{kind, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func str8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func exportList(b []byte, exports []export) []byte {
	var list []byte
	for _, e := range exports {
		list = str8(str8(list, e.namespace), e.name)
		list = binary.BigEndian.AppendUint16(list, uint16(6*len(e.ports)))
		for port, ready := range e.ports {
			list = binary.BigEndian.AppendUint16(list, port)
			list = binary.BigEndian.AppendUint32(list, ready)
		}
	}
	n := len(list)
	return append(append(b, byte(n>>16), byte(n>>8), byte(n)), list...)
}

// services returns n exports with 60-character names, numbered from
// first, in namespace "flood", each one port with one ready endpoint.
func services(first, n int) []export {
	out := make([]export, n)
	for i := range out {
		out[i] = export{namespace: "flood", name: fmt.Sprintf("svc-%056d", first+i), ports: map[uint16]uint32{443: 1}}
	}
	return out
}
