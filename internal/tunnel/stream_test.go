package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"github.com/ewgw/ewgw/internal/pipe"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// payload returns n deterministic bytes for seed.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	mrand.NewChaCha8(s).Read(b)
	return b
}

// Test services, by Header.Name, of testHandler.
const (
	svcSHA     = "sha"     // read to EOF, reply sha256(request) then Port KiB of payload(Port)
	svcRefuse  = "refuse"  // refuse with code Port
	svcSilent  = "silent"  // return without answering
	svcRefuse0 = "refuse0" // refuse with CodeOK, which is not a refusal
)

// testHandler implements the test services on streams.
func testHandler(_ context.Context, in *Inbound) {
	switch in.Header.Name {
	case svcRefuse:
		in.Refuse(ErrorCode(in.Header.Port))
	case svcRefuse0:
		in.Refuse(CodeOK)
	case svcSHA:
		s, err := in.Accept()
		if err != nil {
			return
		}
		serveSHA(s, int(in.Header.Port))
	}
}

// serveSHA reads c to EOF, then writes the request's SHA-256 and kib KiB of
// payload, then half-closes.
func serveSHA(c interface {
	io.ReadWriter
	CloseWrite() error
}, kib int) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	c.Write(h.Sum(nil))
	c.Write(payload(uint64(kib), kib<<10))
	c.CloseWrite()
}

// exchange writes req on c, half-closes, reads the whole reply and checks
// it is what serveSHA sends for req and kib.
func exchange(c interface {
	io.ReadWriter
	CloseWrite() error
}, req []byte, kib int) error {
	var g errgroup.Group
	g.Go(func() error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		return c.CloseWrite()
	})
	return errors.Join(readReply(c, req, kib), g.Wait())
}

// readReply reads c to EOF and checks it is serveSHA's reply to req.
func readReply(c io.Reader, req []byte, kib int) error {
	reply, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(req)
	if !bytes.Equal(reply, append(sum[:], payload(uint64(kib), kib<<10)...)) {
		return errors.New("reply mismatch")
	}
	return nil
}

func streamPair(t *testing.T) (a, b *node) {
	t.Helper()
	return pair(t, func(a, b *Config) {
		a.Handler = HandlerFunc(testHandler)
		b.Handler = HandlerFunc(testHandler)
	})
}

func TestStreamRoundTrip(t *testing.T) {
	a, b := streamPair(t)
	tests := []struct {
		name     string
		from     *node
		to       string
		req, kib int
	}{
		{name: "empty", from: a, to: "west", req: 0, kib: 1},
		{name: "small", from: a, to: "west", req: 100, kib: 1},
		{name: "large both ways", from: a, to: "west", req: 1<<20 + 3, kib: 1024},
		{name: "reverse direction", from: b, to: "east", req: 64 << 10, kib: 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Header{Namespace: "default", Name: svcSHA, Port: uint16(tt.kib)}
			s, err := tt.from.tun.Open(t.Context(), tt.to, h, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := exchange(s, payload(7, tt.req), tt.kib); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := counter(t, a.reg, "ewgw_tunnel_streams_opened_total", "ok"); n != 3 {
		t.Errorf("a opened ok %v, want 3", n)
	}
	if n := counter(t, b.reg, "ewgw_tunnel_streams_accepted_total", "ok"); n != 3 {
		t.Errorf("b accepted ok %v, want 3", n)
	}
}

func TestStreamRefusals(t *testing.T) {
	a, b := streamPair(t)
	good, err := sampleHeader().AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		h    Header
		raw  []byte // written instead of h when set
		want ErrorCode
	}{
		{name: "not exported", h: Header{Namespace: "x", Name: svcRefuse, Port: uint16(CodeNotExported)}, want: CodeNotExported},
		{name: "no endpoint", h: Header{Namespace: "x", Name: svcRefuse, Port: uint16(CodeNoEndpoint)}, want: CodeNoEndpoint},
		{name: "dial failed", h: Header{Namespace: "x", Name: svcRefuse, Port: uint16(CodeDialFailed)}, want: CodeDialFailed},
		{name: "denied", h: Header{Namespace: "x", Name: svcRefuse, Port: uint16(CodeDenied)}, want: CodeDenied},
		{name: "handler silent", h: Header{Namespace: "x", Name: svcSilent, Port: 1}, want: CodeInternal},
		{name: "refused with ok", h: Header{Namespace: "x", Name: svcRefuse0, Port: 1}, want: CodeInternal},
		{name: "bad header", raw: good[:len(good)-1], want: CodeBadHeader},
		{name: "bad version", raw: append([]byte{7}, good[1:]...), want: CodeUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.raw != nil {
				err = rawOpen(t, a, "west", tt.raw, false)
			} else {
				var s *Stream
				s, err = a.tun.Open(t.Context(), "west", tt.h, nil)
				if s != nil {
					s.Close()
				}
			}
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != tt.want || re.Peer != "west" {
				t.Fatalf("err %v, want refusal %v", err, tt.want)
			}
			if n := counter(t, b.reg, "ewgw_tunnel_streams_accepted_total", tt.want.String()); n == 0 {
				t.Errorf("b counted no %v refusal", tt.want)
			}
		})
	}
	if n := counter(t, a.reg, "ewgw_tunnel_streams_opened_total", "not_exported"); n != 1 {
		t.Errorf("a opened not_exported %v, want 1", n)
	}
}

// rawOpen opens a stream on one of node's connections to peer, draining
// ones too if draining is set, writes hdr as is with FIN and reads the
// status.
func rawOpen(t *testing.T, n *node, peer string, hdr []byte, draining bool) error {
	t.Helper()
	p := n.tun.peers[peer]
	c := p.pick(nil)
	if draining {
		p.mu.Lock()
		c = p.conns[0]
		p.mu.Unlock()
	}
	if !n.tun.streams.add() {
		t.Fatal("tunnel closing")
	}
	qs, err := c.sess.OpenStream(t.Context())
	if err != nil {
		n.tun.streams.done()
		return err
	}
	c.streams.Add(1) // what admit counts, draining or not
	s := n.tun.newStream(c, qs)
	defer s.Abort(CodeAborted)
	if _, err := s.Write(hdr); err != nil {
		return err
	}
	s.CloseWrite()
	return s.handshake(t.Context(), nil)
}

func TestManyStreams(t *testing.T) {
	const streams, kib = 1000, 64
	a, _ := streamPair(t)
	var mu sync.Mutex
	locals := map[string]bool{}
	var g errgroup.Group
	// Hundreds of streams in flight at once, without a 1000-way burst that
	// only measures how starved a loaded 2-core CI box is.
	g.SetLimit(200)
	for i := range streams {
		g.Go(func() error {
			s, err := a.tun.Open(t.Context(), "west", Header{Namespace: "default", Name: svcSHA, Port: kib}, nil)
			if err != nil {
				return err
			}
			defer s.Close()
			mu.Lock()
			locals[s.LocalAddr().String()] = true
			mu.Unlock()
			return exchange(s, payload(uint64(i), kib<<10), kib)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(locals) < 2 {
		t.Errorf("streams used %d sockets, want them spread over several", len(locals))
	}
	if n := counter(t, a.reg, "ewgw_tunnel_streams_opened_total", "ok"); n != streams {
		t.Errorf("opened ok %v, want %d", n, streams)
	}
}

// frontend accepts TCP connections and splices each into a stream to peer.
func frontend(t *testing.T, n *node, peer string, h Header) net.Addr {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() {
				s, err := n.tun.Open(context.Background(), peer, h, nil)
				if err != nil {
					c.Close()
					return
				}
				pipe.Pipe(c, s, time.Minute)
			})
		}
	})
	return ln.Addr()
}

// spliceHandler accepts every stream and splices it to a backend TCP
// connection from dial.
func spliceHandler(dial func() (*net.TCPConn, error)) HandlerFunc {
	return func(_ context.Context, in *Inbound) {
		backend, err := dial()
		if err != nil {
			in.Refuse(CodeDialFailed)
			return
		}
		s, err := in.Accept()
		if err != nil {
			backend.Close()
			return
		}
		pipe.Pipe(backend, s, time.Minute)
	}
}

// backend serves TCP connections with serve until the test ends.
func backend(t *testing.T, serve func(*net.TCPConn)) func() (*net.TCPConn, error) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	return func() (*net.TCPConn, error) {
		c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
		return c, err
	}
}

func TestSplice(t *testing.T) {
	const kib = 512
	tests := []struct {
		name  string
		serve func(*net.TCPConn)
		check func(t *testing.T, client *net.TCPConn)
	}{
		{
			name: "half-close both ways",
			serve: func(c *net.TCPConn) {
				defer c.Close()
				serveSHA(c, kib)
			},
			check: func(t *testing.T, client *net.TCPConn) {
				if err := exchange(client, payload(3, 1<<20), kib); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "backend reset reaches client",
			serve: func(c *net.TCPConn) {
				io.ReadFull(c, make([]byte, 10))
				c.SetLinger(0)
				c.Close()
			},
			check: func(t *testing.T, client *net.TCPConn) {
				client.Write(make([]byte, 10))
				_, err := io.ReadAll(client)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("client read: %v, want ECONNRESET", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dial := backend(t, tt.serve)
			a, _ := pair(t, func(_, b *Config) { b.Handler = spliceHandler(dial) })
			addr := frontend(t, a, "west", Header{Namespace: "default", Name: "svc", Port: 443})
			client, err := net.DialTCP("tcp4", nil, addr.(*net.TCPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.SetDeadline(time.Now().Add(waitTimeout))
			tt.check(t, client)
		})
	}
}
