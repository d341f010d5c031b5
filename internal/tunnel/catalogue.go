package tunnel

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
)

// Export is an exported service as announced to peers: the shared
// model.Export, one definition for both. Its Peer is empty on the wire and
// in what the tunnel keeps; the gateway names the peer when it routes. Its
// Audience never goes on the wire: each connection's peer is sent only the
// exports whose audience admits it (its configured name and authenticated
// ID), and exports received from peers carry the zero Audience. Ready
// travels as a 32-bit count and is clamped to MaxReady on receipt.
type Export = model.Export

// ExportPort is one exported port and how many ready endpoints back it.
type ExportPort = model.ExportPort

// serviceKey names an exported service; a catalogue holds one entry per key.
type serviceKey = model.ServiceKey

func keyOf(e Export) serviceKey { return e.Service }

func compareKeys(a, b serviceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func compareExports(a, b Export) int { return compareKeys(keyOf(a), keyOf(b)) }

// snapshot is a catalogue at a generation: what a side last sent on a
// connection, or what a connection last received. Exports are sorted by key
// with keys unique, and never modified once in a snapshot.
type snapshot struct {
	Gen     uint64
	Exports []Export
}

// delta turns the catalogue at generation Base into the one at Gen: Removed
// keys go, and Upserts replace or add whole entries.
type delta struct {
	Base, Gen uint64
	Upserts   []Export
	Removed   []serviceKey
}

// normalize returns a copy of exports sorted by key, keeping the last entry
// of a duplicated key. Deltas are keyed by service, so a catalogue cannot
// hold two entries for one; sorting gives every side the same order.
func normalize(exports []Export) []Export { return sortUnique(cloneExports(exports)) }

// sortUnique is normalize in place, for a list this side owns (one just
// decoded).
func sortUnique(exports []Export) []Export {
	if !slices.IsSortedFunc(exports, compareExports) {
		slices.SortStableFunc(exports, compareExports)
	}
	out := exports[:0]
	for _, e := range exports {
		if n := len(out); n > 0 && keyOf(out[n-1]) == keyOf(e) {
			out[n-1] = e
			continue
		}
		out = append(out, e)
	}
	clear(exports[len(out):])
	return out
}

// diff returns the delta from prev to next, both normalized.
func diff(prev, next snapshot) delta {
	d := delta{Base: prev.Gen, Gen: next.Gen}
	a, b := prev.Exports, next.Exports
	for len(a) > 0 || len(b) > 0 {
		switch c := compareHeads(a, b); {
		case c < 0:
			d.Removed = append(d.Removed, keyOf(a[0]))
			a = a[1:]
		case c > 0:
			d.Upserts = append(d.Upserts, b[0])
			b = b[1:]
		default:
			if !exportEqual(a[0], b[0]) {
				d.Upserts = append(d.Upserts, b[0])
			}
			a, b = a[1:], b[1:]
		}
	}
	return d
}

// compareHeads orders the first entries of two sorted lists for a merge
// walk; an exhausted list sorts last.
func compareHeads(a, b []Export) int {
	switch {
	case len(b) == 0:
		return -1
	case len(a) == 0:
		return 1
	}
	return compareExports(a[0], b[0])
}

// apply returns s with d applied. A delta that does not start from s's
// generation, does not move it forward, or removes a service s does not
// hold means the two sides disagree on the catalogue: an error, since
// applying it would route on a list the peer never announced.
//
// Removals go first, then upserts, the last of a repeated key winning. It
// sorts d's lists in place, and shares s's entries.
func (s snapshot) apply(d delta) (snapshot, error) {
	if d.Base != s.Gen || d.Gen <= d.Base {
		return snapshot{}, fmt.Errorf("delta from generation %d to %d on generation %d", d.Base, d.Gen, s.Gen)
	}
	ups := sortUnique(d.Upserts)
	removed := d.Removed
	slices.SortFunc(removed, compareKeys)
	out := make([]Export, 0, len(s.Exports)+len(ups))
	for _, e := range s.Exports {
		k := keyOf(e)
		if len(removed) > 0 && compareKeys(removed[0], k) < 0 {
			break // removes a key before e: not in the catalogue
		}
		gone := len(removed) > 0 && removed[0] == k
		if gone {
			removed = removed[1:]
		}
		for len(ups) > 0 && compareKeys(keyOf(ups[0]), k) < 0 {
			out, ups = append(out, ups[0]), ups[1:]
		}
		switch {
		case len(ups) > 0 && keyOf(ups[0]) == k:
			out, ups = append(out, ups[0]), ups[1:]
		case !gone:
			out = append(out, e)
		}
	}
	if len(removed) > 0 {
		k := removed[0]
		return snapshot{}, fmt.Errorf("delta removes %s/%s, not in the catalogue", k.Namespace, k.Name)
	}
	if out = append(out, ups...); len(out) == 0 {
		out = nil // an empty catalogue is nil, as normalize makes it
	}
	return snapshot{Gen: d.Gen, Exports: out}, nil
}

// replace returns the full snapshot next in place of s; generations only
// move forward on a connection. It sorts next's list in place.
func (s snapshot) replace(next snapshot) (snapshot, error) {
	if next.Gen <= s.Gen {
		return snapshot{}, fmt.Errorf("snapshot of generation %d on generation %d", next.Gen, s.Gen)
	}
	return snapshot{Gen: next.Gen, Exports: sortUnique(next.Exports)}, nil
}

// exportsEqual reports whether a and b list the same exports in the same
// order, port order included (the first port is the default).
func exportsEqual(a, b []Export) bool { return slices.EqualFunc(a, b, exportEqual) }

func exportEqual(x, y Export) bool {
	return x.Service == y.Service && slices.Equal(x.Ports, y.Ports) && x.Audience.Equal(y.Audience)
}

// visibleTo returns the exports of s that p may see, as a snapshot of the
// same generation. It shares s's entries, and s itself when all are.
func (s snapshot) visibleTo(p audience.Peer) snapshot {
	i := slices.IndexFunc(s.Exports, func(e Export) bool { return !e.Audience.Allows(p) })
	if i < 0 {
		return s
	}
	out := slices.Clone(s.Exports[:i])
	for _, e := range s.Exports[i+1:] {
		if e.Audience.Allows(p) {
			out = append(out, e)
		}
	}
	return snapshot{Gen: s.Gen, Exports: out}
}

// cloneExports deep-copies an export list, so callers never share slices
// with the tunnel.
func cloneExports(in []Export) []Export {
	if in == nil {
		return nil
	}
	out := make([]Export, len(in))
	for i, e := range in {
		out[i] = Export{Peer: e.Peer, Service: e.Service, Ports: slices.Clone(e.Ports), Audience: e.Audience}
	}
	return out
}
