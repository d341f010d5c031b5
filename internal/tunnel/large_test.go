package tunnel

import (
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// hasCatalogue reports whether a peer is up announcing exactly want, on
// conns connections.
func hasCatalogue(want []Export, conns int) func(PeerStatus) bool {
	return func(ps PeerStatus) bool {
		return ps.Up && ps.Conns == conns && exportsEqual(ps.Exports, want)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// largeWait bounds each step of a large catalogue's exchange. Under the
// race detector, beside the other packages' tests on a 2-core machine, a
// 7 MB catalogue can take over 20 s to peer.
const largeWait = 90 * time.Second

// largePair returns configs for east (a, the importer) and west (b, which
// exports exports); each dials the other once, on the given sockets'
// addresses, and both allow catalogues of max services. Their lease and
// hello timeout are long: on a starved machine a side busy encoding or
// decoding a large catalogue can leave its connection unheard for longer
// than half the default lease, which moves an auto slot to TCP and drops
// the QUIC connection with its unfinished hello, again and again.
func largePair(t *testing.T, max int, exports []Export) (cfgA, cfgB Config) {
	t.Helper()
	ca := newCA(t, "td")
	cfgA, cfgB = testConfig("east", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca), testConfig("west", ca.leaf(t, "/ns/ewgw/sa/ewgw"), ca)
	for _, c := range []*Config{&cfgA, &cfgB} {
		c.ConnsPerPeer = 1
		c.MaxImportedServices, c.MaxImportedBytes = max, 16<<20
		c.Lease, c.HelloTimeout = 20*time.Second, largeWait
	}
	cfgB.Exports = exports
	return cfgA, cfgB
}

// TestLargeCatalogue: a peer exporting 100,000 services with 60-character
// names (7.3 MB encoded, seven times what one control message may carry)
// peers, applies a change of 20,000 services at once, and comes back
// after a restart of either side. It logs the importer's heap per
// imported service (docs/performance.md).
func TestLargeCatalogue(t *testing.T) {
	const total, change = 100_000, 20_000
	exports := longNames("shop", 0, total)
	cfgA, cfgB := largePair(t, total, exports)
	pa, pb := bindUDP(t, "127.0.0.1:0"), bindUDP(t, "127.0.0.1:0")
	addrA, addrB := pa.LocalAddr().String(), pb.LocalAddr().String()
	cfgA.Peers = []Peer{{Name: "west", Addrs: []string{addrB}, Expect: "td"}}
	cfgB.Peers = []Peer{{Name: "east", Addrs: []string{addrA}, Expect: testID}}

	t0 := time.Now()
	b := start(t, cfgB, pb)
	before := heapInUse()
	a := start(t, cfgA, pa)
	waitPeerWithin(t, a, "west", largeWait, hasCatalogue(exports, 2))
	waitPeerWithin(t, b, "east", largeWait, func(ps PeerStatus) bool { return ps.Up && ps.Conns == 2 })
	after := heapInUse()
	t.Logf("importer heap for %d services on 2 connections: %.1f MiB, %d bytes per service",
		total, float64(after-before)/(1<<20), int(after-before)/total)

	t.Logf("peered %v", time.Since(t0))
	// 20,000 services go and 20,000 others come, in one update.
	next := normalize(append(slices.Clone(exports[change:]), longNames("web", 0, change)...))
	b.tun.SetExports(next)
	waitPeerWithin(t, a, "west", largeWait, hasCatalogue(next, 2))

	t.Logf("changed %v", time.Since(t0))
	// West restarts: east gets the whole catalogue again from its new run.
	b.stop()
	waitPeerWithin(t, a, "west", largeWait, isDown)
	cfgB.Exports = next
	start(t, cfgB, bindUDP(t, addrB)) // stopped when the test ends
	waitPeerWithin(t, a, "west", largeWait, hasCatalogue(next, 2))

	t.Logf("west restarted %v", time.Since(t0))
	// East restarts.
	a.stop()
	a = start(t, cfgA, bindUDP(t, addrA))
	waitPeerWithin(t, a, "west", largeWait, hasCatalogue(next, 2))
}

// pollPeer is waitPeer for a state that does not notify, as a failed
// hello's error.
func pollPeer(t *testing.T, n *node, name string, cond func(PeerStatus) bool) PeerStatus {
	t.Helper()
	var got PeerStatus
	eventually(t, "peer "+name+" in the state wanted", func() bool {
		for _, ps := range n.tun.Peers() {
			if ps.Name == name && cond(ps) {
				got = ps
				return true
			}
		}
		return false
	})
	return got
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestLargeCatalogueOverBudget: a catalogue over the importer's budget is
// refused, at the hello or in an update, part way through its parts; both
// sides log why at info, and show it as the peer's last error.
func TestLargeCatalogueOverBudget(t *testing.T) {
	const max = 2_000
	for _, tt := range []struct {
		name          string
		hello, update int // services announced in the hello, then in an update (0: none)
	}{
		{name: "hello", hello: 5 * max},
		{name: "update", hello: max / 2, update: 5 * max},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfgA, cfgB := largePair(t, max, longNames("shop", 0, tt.hello))
			cfgB.MaxImportedServices = 10 * max
			logsA, logsB := &syncBuffer{}, &syncBuffer{}
			cfgA.Logger, cfgB.Logger = newTextLogger(logsA), newTextLogger(logsB)
			pb := bindUDP(t, "127.0.0.1:0")
			cfgA.Peers = []Peer{{Name: "west", Addrs: []string{pb.LocalAddr().String()}, Expect: "td"}}
			cfgA.RedialMin, cfgA.RedialMax = waitTimeout, waitTimeout // one attempt
			cfgB.Peers = []Peer{{Name: "east", Expect: testID}}
			b := start(t, cfgB, pb)
			a := start(t, cfgA, bindUDP(t, "127.0.0.1:0"))
			if tt.update > 0 {
				waitPeer(t, a, "west", hasCatalogue(cfgB.Exports, 1))
				b.tun.SetExports(longNames("shop", 0, tt.update))
			}
			ps := pollPeer(t, a, "west", func(ps PeerStatus) bool { return ps.LastError != nil && ps.Conns == 0 })
			var pe *PolicyError
			if !errors.As(ps.LastError, &pe) || pe.Reason != refuseServices || !strings.Contains(pe.Error(), "at least") {
				t.Errorf("importer's last error %v, want an %s refusal part way", ps.LastError, refuseServices)
			}
			ps = pollPeer(t, b, "east", func(ps PeerStatus) bool { return ps.LastError != nil && ps.Conns == 0 })
			if code, ok := remoteCode(ps.LastError); !ok || code != CodeLimit ||
				testTransport != TransportTCP && !strings.Contains(ps.LastError.Error(), "peering.max_imported_services") {
				t.Errorf("exporter's last error %v, want the importer's reason", ps.LastError)
			}
			for side, logs := range map[string]*syncBuffer{"importer": logsA, "exporter": logsB} {
				eventually(t, side+" logging the refusal at info", func() bool {
					for line := range strings.Lines(logs.String()) {
						if strings.Contains(line, "level=INFO") && strings.Contains(line, "over the budget") {
							return true
						}
					}
					return false
				})
			}
		})
	}
}
