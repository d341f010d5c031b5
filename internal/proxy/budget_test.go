package proxy

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestBudgetShared: client connections and peers' streams take slots of
// one budget, MaxConns. A peer's stream never waits for a slot; the accept
// loop holds one while it waits for the next client.
func TestBudgetShared(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConns = 3; c.HelloTimeout = time.Minute })
	// Two clients that started a hello and stalled, and the accept loop
	// waiting for a third, hold every slot.
	var stalled []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte{0x16}); err != nil { // a TLS handshake record begins
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	waitFor(t, "two clients handled", func() bool { return h.proxy.Active() == 2 })
	if _, ok := h.proxy.admitPeer(); ok {
		t.Fatal("a peer's stream got a slot while clients held them all")
	}

	// A stalled client leaves: a peer's stream fits again.
	stalled[0].Close()
	var release func()
	waitFor(t, "a slot free for a peer", func() bool {
		r, ok := h.proxy.admitPeer()
		release = r
		return ok
	})
	if _, ok := h.proxy.admitPeer(); ok {
		t.Fatal("two peer streams in one free slot")
	}
	release()
	// The client waiting in the accept queue is served all along.
	c, err := tls.Dial("tcp", h.addr, h.clientTLS(webName))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// waitFor polls cond, for state with no notification.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
