package proxy

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// sources counts live connections per client address.
type sources struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// add counts a connection from addr and reports whether it is within max;
// when it is, done uncounts it.
func (s *sources) add(addr net.Addr, max int) (done func(), ok bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return func() {}, true // not a TCP connection: nothing to count by
	}
	a := ta.AddrPort().Addr().Unmap()
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

// helloBudget is the bytes that hellos being read may hold, and who holds
// them, oldest first. A new connection always gets its share: when the
// budget is spent, the hellos waiting longest give theirs up and are cut
// short. An honest client's hello arrives within a round trip of its
// connect, so it is the newest, not the oldest, while a flood of clients
// that never finish a hello only evicts itself.
type helloBudget struct {
	mu      sync.Mutex
	left    int
	waiting list.List // of *helloSlot, oldest first
}

// helloSlot is one hello being read and the bytes it holds.
type helloSlot struct {
	c       net.Conn
	size    int
	elem    *list.Element
	evicted atomic.Bool
}

// enter holds size bytes for c's hello, evicting the oldest waiting hellos
// as needed. It reports false only when size exceeds the whole budget.
func (b *helloBudget) enter(c net.Conn, size int) (*helloSlot, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.left < size {
		front := b.waiting.Front()
		if front == nil {
			return nil, false
		}
		old := front.Value.(*helloSlot)
		b.waiting.Remove(front)
		b.left += old.size
		old.evicted.Store(true)
		// Its read returns at once; its handler refuses it (hello_budget).
		_ = old.c.SetReadDeadline(time.Now())
	}
	b.left -= size
	s := &helloSlot{c: c, size: size}
	s.elem = b.waiting.PushBack(s)
	return s, true
}

// leave gives back s's bytes, unless an eviction already took them.
func (b *helloBudget) leave(s *helloSlot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.evicted.Load() {
		b.waiting.Remove(s.elem)
		b.left += s.size
	}
}
