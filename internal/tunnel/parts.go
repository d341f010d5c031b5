package tunnel

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// A catalogue travels in parts (see the control stream comment in
// control.go): a sender cuts a snapshot or a delta into messages of about
// partLen bytes, and a receiver collects them (assembly) within its budget
// before applying the whole.

// partLen is the size a sender fills each part's entries up to: about 850
// services with 60-character names, so a part never nears maxControlLen,
// and a receiver's buffer for one message stays small.
const partLen = 64 << 10

// partOverhead bounds what a part adds to its entries: the frame prefix,
// generations, flag and list prefixes (a hello's strings aside).
const partOverhead = 32

// exportLen and keyLen are the encoded sizes of an export list entry and
// of a key list entry.
func exportLen(e Export) int {
	return 2 + len(e.Service.Namespace) + len(e.Service.Name) + 2 + exportPortLen*len(e.Ports)
}

func keyLen(k serviceKey) int { return 2 + len(k.Namespace) + len(k.Name) }

// split cuts list into runs of at most limit bytes each (by size), in
// order; a run holds at least one entry. An empty list gives no run.
func split[T any](list []T, size func(T) int, limit int) [][]T {
	var runs [][]T
	start, n := 0, 0
	for i, v := range list {
		l := size(v)
		if i > start && n+l > limit {
			runs = append(runs, list[start:i:i])
			start, n = i, 0
		}
		n += l
	}
	if start < len(list) {
		runs = append(runs, list[start:len(list):len(list)])
	}
	return runs
}

// appendSnapshot appends the messages that carry h's catalogue: a hello
// with h's other fields (first == kindHello) or a snapshot, then snapshot
// parts of the same generation.
func appendSnapshot(b []byte, first msgKind, h hello) ([]byte, error) {
	runs := split(h.Exports, exportLen, partLen)
	if len(runs) == 0 {
		runs = [][]Export{nil}
	}
	b = slices.Grow(b, sizeOf(h.Exports, exportLen)+len(runs)*partOverhead)
	for i, run := range runs {
		m := message{kind: kindExports, more: i < len(runs)-1, hello: hello{Gen: h.Gen, Exports: run}}
		if i == 0 && first == kindHello {
			m.kind, m.hello = kindHello, h
			m.hello.Exports = run
		}
		var err error
		if b, err = appendMessage(b, m); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendDelta appends the messages that carry d: parts with upserts, then
// parts with removals; one empty part if d is empty.
func appendDelta(b []byte, d delta) ([]byte, error) {
	var parts []delta
	for _, run := range split(d.Upserts, exportLen, partLen) {
		parts = append(parts, delta{Base: d.Base, Gen: d.Gen, Upserts: run})
	}
	for _, run := range split(d.Removed, keyLen, partLen) {
		parts = append(parts, delta{Base: d.Base, Gen: d.Gen, Removed: run})
	}
	if len(parts) == 0 {
		parts = []delta{{Base: d.Base, Gen: d.Gen}}
	}
	b = slices.Grow(b, sizeOf(d.Upserts, exportLen)+sizeOf(d.Removed, keyLen)+len(parts)*partOverhead)
	for i, p := range parts {
		var err error
		if b, err = appendMessage(b, message{kind: kindDelta, more: i < len(parts)-1, delta: p}); err != nil {
			return b, err
		}
	}
	return b, nil
}

// encodeUpdate encodes the messages that move a receiver holding prev to
// next: a delta, or the full snapshot where the delta would be larger.
func encodeUpdate(prev, next snapshot) ([]byte, error) {
	d := diff(prev, next)
	if sizeOf(next.Exports, exportLen) < sizeOf(d.Upserts, exportLen)+sizeOf(d.Removed, keyLen) {
		return appendSnapshot(nil, kindExports, hello{Gen: next.Gen, Exports: next.Exports})
	}
	return appendDelta(nil, d)
}

func sizeOf[T any](list []T, size func(T) int) int {
	n := 0
	for _, v := range list {
		n += size(v)
	}
	return n
}

// assembly collects the parts of one update as they arrive. It holds no
// more than the budget allows: the parts so far are refused as soon as
// they carry more services or bytes than MaxImportedServices or
// MaxImportedBytes, or remove more services than the receiver holds.
type assembly struct {
	m       message    // the first part, its lists emptied
	ups     [][]Export // each part's exports or upserts, joined at the end
	removed [][]serviceKey
	n       int // entries in ups
	bytes   int // catalogueBytes of ups
	nRem    int // entries in removed
}

// errPartOrder reports a part that does not continue the update in
// progress.
var errPartOrder = errors.New("control message does not continue the catalogue update in progress")

// add adds part m, the first one if a is empty. held is how many services
// the receiver's view holds. It reports whether m was the last part.
func (a *assembly) add(cfg *Config, m message, held int) (bool, error) {
	first := a.m.kind == 0
	if first {
		a.m = m
		a.m.hello.Exports, a.m.delta.Upserts, a.m.delta.Removed = nil, nil, nil
	} else if !a.continues(m) {
		return false, fmt.Errorf("%w: kind %d", errPartOrder, m.kind)
	}
	ups := m.delta.Upserts
	if m.kind != kindDelta {
		ups = m.hello.Exports
	}
	if m.more && len(ups)+len(m.delta.Removed) == 0 {
		// No sender needs one, and a stream of them would grow a.
		return false, errors.New("empty catalogue part with more to come")
	}
	a.ups, a.removed = append(a.ups, ups), append(a.removed, m.delta.Removed)
	a.n, a.bytes, a.nRem = a.n+len(ups), a.bytes+catalogueBytes(ups), a.nRem+len(m.delta.Removed)
	if pe := cfg.checkCounts(a.n, a.bytes, m.more); pe != nil {
		return false, pe
	}
	if a.nRem > held {
		return false, fmt.Errorf("delta removes %d services from a catalogue of %d", a.nRem, held)
	}
	if m.more {
		return false, nil
	}
	a.m.more = false
	if a.m.kind == kindDelta {
		a.m.delta.Upserts, a.m.delta.Removed = slices.Concat(a.ups...), slices.Concat(a.removed...)
	} else {
		a.m.hello.Exports = slices.Concat(a.ups...)
	}
	return true, nil
}

// continues reports whether m is the next part of the update in a.
func (a *assembly) continues(m message) bool {
	switch a.m.kind {
	case kindHello, kindExports:
		return m.kind == kindExports && m.hello.Gen == a.m.hello.Gen
	case kindDelta:
		return m.kind == kindDelta && m.delta.Base == a.m.delta.Base && m.delta.Gen == a.m.delta.Gen
	}
	return false
}

// partReadError reports that the stream failed while readParts waited for
// a part: the connection closed, or the peer went silent. A part that
// arrived and broke the protocol is any other error.
type partReadError struct{ err error }

func (e partReadError) Error() string { return e.err.Error() }
func (e partReadError) Unwrap() error { return e.err }

// readParts completes the update whose first part is m, reading the
// others from r, and returns it as one message. held is how many services
// the receiver's view holds.
func (t *Tunnel) readParts(r io.Reader, m message, held int) (message, error) {
	var a assembly
	for {
		done, err := a.add(&t.cfg, m, held)
		if err != nil || done {
			return a.m, err
		}
		if m, err = readMessage(r); err != nil {
			if !errors.Is(err, ErrBadHeader) {
				err = partReadError{err}
			}
			return message{}, err
		}
		t.m.controlReceived.WithLabelValues(kindNames[m.kind]).Inc()
	}
}
