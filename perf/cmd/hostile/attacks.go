package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ewgw/ewgw/internal/status"
	"github.com/ewgw/ewgw/internal/tunnel"
	"github.com/ewgw/ewgw/internal/tunnel/param"
)

// maxConnsIn is the connections one peer identity may hold at the victim:
// its default max_conns_per_peer_in, twice the default conns_per_peer.
const maxConnsIn = 2 * param.DefaultConnsPerPeer

// tally counts outcomes by name, for a note.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[k]++
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t.n)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, t.n[k]))
	}
	return strings.Join(parts, ", ")
}

// catalogueFlood: on each of conns connections, a hello with 10
// services, then two deltas of 12,000 services each (60-character names,
// about 0.9 MB per delta), which takes the catalogue past
// max_imported_services (20,000); when the victim closes the connection,
// again.
func catalogueFlood(conns int) func(ctx context.Context, e *setup, victim *gateway, r *result) error {
	return func(ctx context.Context, e *setup, victim *gateway, r *result) error {
		return floodCatalogue(ctx, e, victim, r, conns)
	}
}

func floodCatalogue(ctx context.Context, e *setup, victim *gateway, r *result, conns int) error {
	h, err := newHostile(e, victim)
	if err != nil {
		return err
	}
	defer h.close()
	const perDelta = 12_000
	hl := hello{cluster: clusterC, region: region(clusterC), exports: services(0, 10)}
	d1, d2 := encodeDelta(1, services(10, perDelta)), encodeDelta(2, services(10+perDelta, perDelta))
	var cycles, sent atomic.Int64
	var codes tally
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := h.dial(ctx)
				if err != nil {
					codes.add("dial: " + closeCode(err))
					continue
				}
				if err := c.hello(ctx, hl); err != nil {
					codes.add("at hello: " + closeCode(err))
					c.close()
					continue
				}
				for _, d := range [][]byte{d1, d2} {
					if c.send(d) == nil {
						sent.Add(int64(len(d)))
					}
				}
				select {
				case <-c.qc.Context().Done():
					codes.add("after deltas: " + closeCode(context.Cause(c.qc.Context())))
				case <-ctx.Done():
					codes.add("still open at the end")
				case <-time.After(10 * time.Second):
					codes.add("not closed in 10 s")
				}
				c.close()
				cycles.Add(1)
			}
		})
	}
	wg.Wait()
	r.note("%d connections at once, %d cycles of hello + 2 deltas of %d services; %.0f MB of deltas sent",
		conns, cycles.Load(), perDelta, float64(sent.Load())/1e6)
	r.note("connections ended: %s", &codes)
	return nil
}

// streamFlood: on each connection C may hold, streams that write one
// byte (the version of a header that never completes), as many as the
// victim's stream credit allows, until e.o.streams are open or the attack
// ends.
func streamFlood(ctx context.Context, e *setup, victim *gateway, r *result) error {
	h, err := newHostile(e, victim)
	if err != nil {
		return err
	}
	defer h.close()
	var opened, blocked atomic.Int64
	var codes tally
	var wg sync.WaitGroup
	for range maxConnsIn {
		c, err := h.dial(ctx)
		if err == nil {
			err = c.hello(ctx, hello{cluster: clusterC, region: region(clusterC)})
		}
		if err != nil {
			codes.add("refused: " + closeCode(err))
			continue
		}
		defer c.close()
		go c.keepLease(ctx)
		wg.Go(func() {
			for ctx.Err() == nil && opened.Load() < int64(e.o.streams) {
				s, err := c.qc.OpenStream()
				var sl *quic.StreamLimitReachedError
				if errors.As(err, &sl) {
					blocked.Add(1)
					s, err = c.qc.OpenStreamSync(ctx)
				}
				if err != nil {
					if ctx.Err() == nil {
						codes.add("open: " + closeCode(err))
					}
					return
				}
				s.Write([]byte{tunnel.HeaderVersion})
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	r.note("tried %d streams on %d connections: %d opened in %s; the victim's stream credit blocked the opener %d times",
		e.o.streams, maxConnsIn, opened.Load(), e.o.phase, blocked.Load())
	if s := codes.String(); s != "" {
		r.note("connection problems: %s", s)
	}
	return nil
}

// connFlood: e.o.conns QUIC connections, 50 handshakes at a time, each
// with a hello; those the victim keeps stay open to the end.
func connFlood(ctx context.Context, e *setup, victim *gateway, r *result) error {
	h, err := newHostile(e, victim)
	if err != nil {
		return err
	}
	defer h.close()
	var codes tally
	var mu sync.Mutex
	var up []*conn
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	start := time.Now()
	for range e.o.conns {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := h.dial(ctx)
			if err != nil {
				codes.add("handshake failed: " + closeCode(err))
				return
			}
			if err := c.hello(ctx, hello{cluster: clusterC, region: region(clusterC)}); err != nil {
				codes.add("closed at hello: " + closeCode(err))
				c.close()
				return
			}
			codes.add("up")
			mu.Lock()
			up = append(up, c)
			mu.Unlock()
			go c.keepLease(ctx)
		})
	}
	wg.Wait()
	r.note("%d connections tried in %.1f s: %s", e.o.conns, time.Since(start).Seconds(), &codes)
	<-ctx.Done()
	alive := 0
	for _, c := range up {
		if c.qc.Context().Err() == nil {
			alive++
		}
		c.close()
	}
	r.note("%d of the %d kept were still up at the end", alive, len(up))
	return nil
}

// claims: C announces the victim's own bench/echo and a service of its
// own with Ready = 2^32−1 and claims A's region, and, every half second,
// a hello in A's name.
func claims(ctx context.Context, e *setup, victim *gateway, r *result) error {
	h, err := newHostile(e, victim)
	if err != nil {
		return err
	}
	defer h.close()
	greedy := []export{
		{namespace: "bench", name: "echo", ports: map[uint16]uint32{443: 1<<32 - 1}},
		{namespace: "claims", name: "web", ports: map[uint16]uint32{443: 1<<32 - 1}},
	}
	c, err := h.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.hello(ctx, hello{cluster: clusterC, region: region(clusterA), exports: greedy}); err != nil {
		return fmt.Errorf("greedy hello: %w", err)
	}
	go c.keepLease(ctx)
	var steered atomic.Int64
	go func() {
		for {
			s, err := c.qc.AcceptStream(ctx)
			if err != nil {
				return
			}
			steered.Add(1)
			s.CancelRead(quic.StreamErrorCode(tunnel.CodeNoEndpoint))
			s.CancelWrite(quic.StreamErrorCode(tunnel.CodeNoEndpoint))
		}
	}()
	var impostor tally
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for ctx.Err() == nil {
		ic, err := h.dial(ctx)
		if err == nil {
			err = ic.hello(ctx, hello{cluster: clusterA, region: region(clusterA)})
			if err == nil {
				impostor.add("accepted")
			} else {
				impostor.add(closeCode(err))
			}
			ic.close()
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	r.note("hellos in %s's name: %s", clusterA, &impostor)
	r.note("greedy peer still up at the end: %t; streams the victim sent it: %d", c.qc.Context().Err() == nil, steered.Load())
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep, err := status.Fetch(sctx, victim.admin, "")
	if err != nil {
		return err
	}
	for _, p := range rep.Peers {
		if p.Name == clusterC {
			r.note("victim's view of %s: cluster %q, region %q (claimed %q), conns %d", p.Name, p.Cluster, p.Region, region(clusterA), p.Conns)
		}
	}
	for _, s := range rep.Imported {
		for _, cl := range s.Clusters {
			if cl.Peer == clusterC || cl.Cluster == clusterC {
				r.note("victim imports %s from %s with ready %v (claimed %d)", s.Service, cl.Cluster, cl.Ports, uint32(1<<32-1))
			}
		}
	}
	return nil
}
