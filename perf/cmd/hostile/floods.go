package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ewgw/ewgw/internal/tunnel"
)

// Unauthenticated floods, from many loopback source addresses:
// 127.0.1.x for QUIC, 127.0.2.x for TCP. The good peer and the probes stay
// on 127.0.0.1.

func floodAddr(third, i int) net.IP { return net.IPv4(127, 0, byte(third), byte(1+i)) }

// prepareInitials makes e.o.initials distinct client Initial datagrams
// (each its own connection ID and ClientHello, X25519 only so that the
// ClientHello fits one datagram and the server can start its handshake at
// once) by letting quic-go's client write its first flight into a socket
// that only records it.
func prepareInitials(e *setup) error {
	if len(e.initials) >= e.o.initials {
		return nil
	}
	// The recorder is not a UDP socket; quic-go need not say so.
	_ = os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPN},
		MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}
	out := make([][]byte, e.o.initials)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(out); i = int(next.Add(1) - 1) {
				p, err := captureInitial(tlsConf)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				out[i] = p
			}
		})
	}
	wg.Wait()
	e.initials = out
	return firstErr
}

// captureInitial returns the first datagram of one quic-go client dial.
func captureInitial(tlsConf *tls.Config) ([]byte, error) {
	c := &recorder{pkt: make(chan []byte, 1), closed: make(chan struct{})}
	tr := &quic.Transport{Conn: c}
	defer tr.Close()
	defer func() { _ = c.Close() }() // first: Close waits for the transport's reader
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = tr.Dial(ctx, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, tlsConf, &quic.Config{})
	}()
	var p []byte
	select {
	case p = <-c.pkt:
	case <-time.After(5 * time.Second):
	}
	cancel()
	<-done
	if p == nil {
		return nil, fmt.Errorf("quic-go wrote no Initial")
	}
	return p, nil
}

// recorder is a net.PacketConn that keeps the first datagram written to it
// and receives nothing.
type recorder struct {
	pkt    chan []byte
	closed chan struct{}
	once   sync.Once
}

func (r *recorder) ReadFrom([]byte) (int, net.Addr, error) { <-r.closed; return 0, nil, net.ErrClosed }
func (r *recorder) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case r.pkt <- append([]byte(nil), p...):
	default:
	}
	return len(p), nil
}
func (r *recorder) Close() error                     { r.once.Do(func() { close(r.closed) }); return nil }
func (r *recorder) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

// initialFlood sends the prepared Initials round-robin from 500 sockets
// (50 addresses, 10 ports each) at e.o.initRate per second, never
// answering, and counts what comes back by packet type.
func initialFlood(ctx context.Context, e *setup, victim *gateway, r *result) error {
	ua, err := net.ResolveUDPAddr("udp4", victim.addr)
	if err != nil {
		return err
	}
	var socks []*net.UDPConn
	defer func() {
		for _, s := range socks {
			_ = s.Close()
		}
	}()
	var replies [4]atomic.Int64 // by long-header type: Initial, 0-RTT, Handshake, Retry
	for i := range 500 {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: floodAddr(1, i/10)})
		if err != nil {
			return err
		}
		socks = append(socks, s)
		go func() {
			buf := make([]byte, 2048)
			for {
				n, err := s.Read(buf)
				if err != nil {
					return
				}
				if n > 0 && buf[0]&0x80 != 0 {
					replies[buf[0]>>4&3].Add(1)
				}
			}
		}()
	}
	start := time.Now()
	perTick := max(1, e.o.initRate/100)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	sent := 0
	for sent < len(e.initials) && ctx.Err() == nil {
		for range perTick {
			if sent == len(e.initials) {
				break
			}
			_, _ = socks[sent%len(socks)].WriteToUDP(e.initials[sent], ua)
			sent++
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	took := time.Since(start)
	<-ctx.Done()
	r.note("%d distinct Initials (%d bytes each) from %d source ports on 50 addresses in %.1f s (%.0f/s), never answered",
		sent, len(e.initials[0]), len(socks), took.Seconds(), float64(sent)/took.Seconds())
	r.note("replies: %d Retry, %d Initial (a handshake started, or a refusal), %d Handshake",
		replies[3].Load(), replies[0].Load(), replies[2].Load())
	return nil
}

// partialHello is the start of a TLS record that announces a 512-byte
// ClientHello and never delivers it.
var partialHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// helloFlood returns an attack that holds e.o.helloConns TCP connections
// from sources addresses, each sending the first bytes of a ClientHello
// and nothing more; a connection the victim closes is replaced, at most
// e.o.helloRate new connections a second.
func helloFlood(sources int) func(ctx context.Context, e *setup, victim *gateway, r *result) error {
	return func(ctx context.Context, e *setup, victim *gateway, r *result) error {
		slots := make(chan struct{}, e.o.helloConns)
		tick := time.NewTicker(time.Second / time.Duration(e.o.helloRate))
		defer tick.Stop()
		var opened, dialErr, quick, slow, held atomic.Int64
		var mu sync.Mutex
		live := map[net.Conn]bool{}
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				continue
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				continue
			}
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: floodAddr(2, i%sources)}}
			wg.Go(func() {
				defer func() { <-slots }()
				c, err := d.DialContext(ctx, "tcp", victim.addr)
				if err != nil {
					dialErr.Add(1)
					return
				}
				opened.Add(1)
				mu.Lock()
				live[c] = true
				mu.Unlock()
				t0 := time.Now()
				_, _ = c.Write(partialHello)
				_, _ = c.Read(make([]byte, 1)) // until the victim closes it, or the end
				mu.Lock()
				delete(live, c)
				mu.Unlock()
				if ctx.Err() != nil {
					held.Add(1)
				} else if time.Since(t0) < time.Second {
					quick.Add(1)
				} else {
					slow.Add(1)
				}
				c.Close()
			})
		}
		mu.Lock()
		for c := range live {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		r.note("%d connections opened in %.0f s from %d source address(es), holding up to %d at once (%d dials failed)",
			opened.Load(), time.Since(start).Seconds(), sources, e.o.helloConns, dialErr.Load())
		r.note("closed by the victim within 1 s: %d; after 1 s or more (hello timeout): %d; still open at the end: %d",
			quick.Load(), slow.Load(), held.Load())
		return nil
	}
}
