package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// sources counts live connections per client address.
type sources struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// add counts a connection from addr and reports whether it is within max;
// when it is, done uncounts it.
func (s *sources) add(addr net.Addr, max int) (done func(), ok bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return func() {}, true // not an IP connection: nothing to count by
	}
	a := ap.Addr().Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[netip.Addr]int{}
	}
	if s.n[a] >= max {
		return nil, false
	}
	s.n[a]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.n[a]--; s.n[a] == 0 {
			delete(s.n, a)
		}
	}, true
}

// helloBudget is the bytes that hellos being read may still reserve.
type helloBudget struct{ left atomic.Int64 }

// take reserves n bytes, or reports false when fewer are left.
func (b *helloBudget) take(n int) bool {
	if b.left.Add(-int64(n)) < 0 {
		b.left.Add(int64(n))
		return false
	}
	return true
}

func (b *helloBudget) give(n int) { b.left.Add(int64(n)) }
