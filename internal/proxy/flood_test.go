package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// holdHello connects to addr and sends the first byte of a hello, so the
// connection is accepted and sits in the hello read.
func holdHello(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedAtOnce reports whether the proxy closed c without a reply within
// a second: far inside the hello timeout a held connection would wait.
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, err := io.Copy(io.Discard, c)
	return n == 0 && err == nil
}

// waitCount waits until the harness counts want rejections for reason.
func waitCount(t *testing.T, h *harness, reason string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.count(resultRejected, reason) != want {
		if time.Now().After(deadline) {
			t.Fatalf("rejected{%s} = %v, want %v", reason, h.count(resultRejected, reason), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceLimit: one address holds at most MaxConnsPerSource connections;
// the next is closed at once and counted, and once one ends another fits.
func TestSourceLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnsPerSource = 2 })
	a := holdHello(t, h.addr)
	holdHello(t, h.addr)
	waitActive(t, h, 2)
	third := holdHello(t, h.addr)
	if !closedAtOnce(t, third) {
		t.Fatal("a third connection from one address was not closed at once")
	}
	waitCount(t, h, reasonSourceLimit, 1)
	a.Close()
	waitActive(t, h, 1)
	if dials := h.dials.Load(); dials != 0 {
		t.Fatalf("%d dials", dials)
	}
	// A whole client still fits.
	c, err := tls.Dial("tcp", h.addr, h.clientTLS("web.default.svc.cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHelloBudget: hellos being read hold HelloMaxSize bytes each of the
// budget. When it is spent, the oldest waiting hello is cut short and
// counted, and a client that sends its hello at once is served: a flood of
// hellos that never finish cannot lock honest clients out.
func TestHelloBudget(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HelloMaxSize = 4096; c.HelloBudget = 2 * 4096 })
	oldest := holdHello(t, h.addr)
	waitActive(t, h, 1)
	holdHello(t, h.addr)
	waitActive(t, h, 2)
	holdHello(t, h.addr)
	if !closedAtOnce(t, oldest) {
		t.Fatal("the oldest waiting hello was not cut short")
	}
	waitCount(t, h, reasonHelloBudget, 1)
	// The budget is full of hellos that never finish; an honest client
	// still gets its turn, and the backend answers.
	c, err := tls.Dial("tcp", h.addr, h.clientTLS("web.default.svc.cluster.local"))
	if err != nil {
		t.Fatalf("an honest client behind a full hello budget: %v", err)
	}
	c.Close()
	if got := h.count(resultRejected, reasonHelloBudget); got != 2 {
		t.Fatalf("rejected{hello_budget} = %v, want 2: one evicted per newcomer", got)
	}
}

// waitActive waits until the proxy handles n connections.
func waitActive(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.proxy.Active() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d active connections, want %d", h.proxy.Active(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
