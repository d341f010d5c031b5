package pipe

import (
	"errors"
	"io"
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
