package lb

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

var (
	a = netip.MustParseAddrPort("10.0.0.1:80")
	b = netip.MustParseAddrPort("10.0.0.2:80")
	c = netip.MustParseAddrPort("10.0.0.3:80")
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLeastConnections(t *testing.T) {
	bal := New(Config{})
	eps := []netip.AddrPort{a, b, c}
	counts := map[netip.AddrPort]int{}
	for range 6 {
		ep, ok := bal.Pick(eps, nil)
		if !ok {
			t.Fatal("Pick found nothing")
		}
		counts[ep]++
	}
	for _, ep := range eps {
		if counts[ep] != 2 {
			t.Fatalf("after 6 picks on 3 endpoints, counts = %v; want 2 each", counts)
		}
	}
	bal.Done(a, nil)
	bal.Done(a, nil)
	if ep, _ := bal.Pick(eps, nil); ep != a {
		t.Fatalf("Pick = %v, want the idle endpoint %v", ep, a)
	}
}

func TestTriedSkipped(t *testing.T) {
	bal := New(Config{})
	ep, ok := bal.Pick([]netip.AddrPort{a, b}, []netip.AddrPort{a})
	if !ok || ep != b {
		t.Fatalf("Pick = %v %v, want %v", ep, ok, b)
	}
	if _, ok := bal.Pick([]netip.AddrPort{a}, []netip.AddrPort{a}); ok {
		t.Fatal("Pick returned a tried endpoint")
	}
}

func TestEjectionAndBackoff(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	bal := New(Config{EjectAfter: 2, EjectFor: time.Second, MaxEjectFor: 3 * time.Second, Now: clk.now})
	eps := []netip.AddrPort{a}
	fail := errors.New("refused")
	failOnce := func() bool {
		t.Helper()
		ep, ok := bal.Pick(eps, nil)
		if !ok {
			t.Fatal("endpoint unexpectedly ejected")
		}
		return bal.Done(ep, fail)
	}
	steps := []struct {
		wait time.Duration // ejection length expected after two failures
	}{{time.Second}, {2 * time.Second}, {3 * time.Second}, {3 * time.Second}}
	for i, s := range steps {
		if failOnce() {
			t.Fatalf("step %d: ejected after one failure", i)
		}
		if !failOnce() {
			t.Fatalf("step %d: not ejected after two failures", i)
		}
		if _, ok := bal.Pick(eps, nil); ok || !bal.ejected(a) {
			t.Fatalf("step %d: ejected endpoint still eligible", i)
		}
		clk.advance(s.wait - time.Millisecond)
		if _, ok := bal.Pick(eps, nil); ok {
			t.Fatalf("step %d: eligible before %v", i, s.wait)
		}
		clk.advance(time.Millisecond)
		if bal.ejected(a) {
			t.Fatalf("step %d: still ejected after %v", i, s.wait)
		}
	}
	ep, _ := bal.Pick(eps, nil)
	bal.Done(ep, nil)
	// A success resets the backoff to its first step.
	failOnce()
	failOnce()
	clk.advance(time.Second)
	if bal.ejected(a) {
		t.Fatal("backoff not reset by a successful dial")
	}
}

func TestStateForgotten(t *testing.T) {
	bal := New(Config{})
	ep, _ := bal.Pick([]netip.AddrPort{a}, nil)
	bal.Done(ep, nil)
	if n := len(bal.state); n != 0 {
		t.Fatalf("%d endpoints tracked after all connections closed", n)
	}
}

// ejected reports whether ep is ejected now.
func (b *Balancer) ejected(ep netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.state[ep]
	return ok && b.cfg.Now().Before(st.ejectedUntil)
}
