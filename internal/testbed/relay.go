package testbed

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// UDPRelay forwards UDP datagrams from any number of clients to one server,
// like a NAT: each client gets its own socket towards the server, so the
// server tells clients apart. Drop black-holes every datagram both ways: a
// path that goes silent without either end seeing a close, as when a peer's
// host dies or a link is cut.
type UDPRelay struct {
	front    *net.UDPConn
	server   *net.UDPAddr
	dropping atomic.Bool

	mu     sync.Mutex
	closed bool
	backs  map[netip.AddrPort]*net.UDPConn // per client
	wg     sync.WaitGroup
}

// NewUDPRelay listens on 127.0.0.1 and relays to server.
func NewUDPRelay(server string) (*UDPRelay, error) {
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &UDPRelay{front: front, server: sa, backs: map[netip.AddrPort]*net.UDPConn{}}
	r.wg.Go(r.fromClients)
	return r, nil
}

// Addr is the address clients send to.
func (r *UDPRelay) Addr() string { return r.front.LocalAddr().String() }

// Drop starts or stops dropping every datagram, both ways.
func (r *UDPRelay) Drop(on bool) { r.dropping.Store(on) }

// Close stops the relay.
func (r *UDPRelay) Close() {
	r.mu.Lock()
	r.closed = true
	_ = r.front.Close() // closing ends the pumps; nothing to report
	for _, b := range r.backs {
		_ = b.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *UDPRelay) fromClients() {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		back := r.back(from)
		if back != nil && !r.dropping.Load() {
			_, _ = back.WriteToUDP(buf[:n], r.server) // UDP: a lost datagram is QUIC's to recover
		}
	}
}

// back returns the client's socket towards the server, opening it and its
// return pump on first use.
func (r *UDPRelay) back(client netip.AddrPort) *net.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backs[client]; ok || r.closed {
		return b
	}
	b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil
	}
	r.backs[client] = b
	r.wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			if !r.dropping.Load() {
				_, _ = r.front.WriteToUDPAddrPort(buf[:n], client)
			}
		}
	})
	return b
}
