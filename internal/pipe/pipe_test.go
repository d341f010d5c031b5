package pipe

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// proxied returns a client and a server connected through Pipe.
func proxied(t *testing.T) (client, server *net.TCPConn, result <-chan error) {
	t.Helper()
	client, front := tcpPair(t)
	back, server := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := Pipe(front, back, time.Minute)
		done <- err
	}()
	return client, server, done
}

func TestHalfClose(t *testing.T) {
	client, server, done := proxied(t)
	if _, err := client.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	req, err := io.ReadAll(server) // ends only if the FIN crossed
	if err != nil || string(req) != "request" {
		t.Fatalf("server read %q, %v", req, err)
	}
	big := make([]byte, 1<<20) // past the small-copy phase
	if _, err := server.Write(big); err != nil {
		t.Fatal(err)
	}
	server.CloseWrite()
	resp, err := io.ReadAll(client)
	if err != nil || len(resp) != len(big) {
		t.Fatalf("client read %d bytes, %v; want %d after its own half-close", len(resp), err, len(big))
	}
	if err := <-done; err != nil {
		t.Fatalf("Pipe = %v", err)
	}
}

// TestResetWhileOtherDirectionWaits: one end resets while the other
// neither sends nor closes. The reset must reach the other end at once, not
// when the other direction ends; both directions are covered, since Pipe
// copies one of them on its own goroutine.
func TestResetWhileOtherDirectionWaits(t *testing.T) {
	for _, serverResets := range []bool{true, false} {
		client, server, done := proxied(t)
		resetter, waiter := client, server
		if serverResets {
			resetter, waiter = server, client
		}
		resetter.SetLinger(0)
		resetter.Close()
		waiter.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := io.ReadAll(waiter)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server resets %v: read: %v, want ECONNRESET", serverResets, err)
		}
		if err := <-done; err == nil {
			t.Fatal("Pipe = nil after a reset")
		}
	}
}

// TestBulkBothWays sends 32 MiB each way at once through Pipe. The end
// readers have small receive buffers, so the splice pumps keep meeting full
// sockets (EAGAIN) and wait on the poller.
func TestBulkBothWays(t *testing.T) {
	const size = 32 << 20
	client, server, done := proxied(t)
	for _, c := range []*net.TCPConn{client, server} {
		if err := c.SetReadBuffer(32 << 10); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute)) // a lost byte fails, not hangs
	}
	type sums struct {
		sent, got [sha256.Size]byte
		n         int64
		err       error
	}
	run := func(c *net.TCPConn, seed uint64) <-chan sums {
		out := make(chan sums, 1)
		go func() {
			var s sums
			wrote := make(chan [sha256.Size]byte, 1)
			go func() {
				h := sha256.New()
				src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), size), h)
				if _, err := io.Copy(c, src); err != nil {
					t.Errorf("write: %v", err)
				}
				c.CloseWrite()
				wrote <- [sha256.Size]byte(h.Sum(nil))
			}()
			h := sha256.New()
			s.n, s.err = io.Copy(h, c)
			s.got = [sha256.Size]byte(h.Sum(nil))
			s.sent = <-wrote
			out <- s
		}()
		return out
	}
	cr, sr := run(client, 1), run(server, 2)
	c, s := <-cr, <-sr
	if c.err != nil || s.err != nil || c.n != size || s.n != size {
		t.Fatalf("client read %d, %v; server read %d, %v; want %d each", c.n, c.err, s.n, s.err, size)
	}
	if c.got != s.sent || s.got != c.sent {
		t.Fatal("SHA-256 mismatch")
	}
	if err := <-done; err != nil {
		t.Fatalf("Pipe = %v", err)
	}
}

// TestResetDuringBulk: the server resets while the proxy's splice pump is
// blocked on the server's full socket. Pipe must fail at once and reset
// the client, not wait for the client to stop sending.
func TestResetDuringBulk(t *testing.T) {
	client, server, done := proxied(t)
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(client, rand.NewChaCha8([32]byte{})) // never ends by itself
		writeErr <- err
	}()
	// Once bytes arrive the copy is in its bulk phase; the server reads no
	// more, so the proxy's pump fills the server's socket and waits.
	if _, err := io.ReadFull(server, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	if err := <-done; err == nil {
		t.Fatal("Pipe = nil after the server reset")
	}
	if err := <-writeErr; !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("client write: %v, want a reset", err)
	}
}
