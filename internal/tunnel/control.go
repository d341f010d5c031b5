package tunnel

import (
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/crypto/cryptobyte"
)

// The control stream is the first bidirectional stream the dialer opens on
// a connection (stream 0, RFC 9000 §2.1). Each side sends a hello first; the
// connection carries data streams only once both hellos have arrived.
//
// The hello carries the sender's whole catalogue at a generation. After
// that, each change to the catalogue goes out on every connection as a
// delta from the snapshot last sent on that connection, or as a full
// snapshot (kindExports) where that is smaller than the delta, as when
// every service changes at once. A receiver applies them in order to its
// own view of the catalogue per connection; a delta whose base is not that
// view's generation is a protocol error, since the two sides no longer
// agree on what the peer exports.
//
// A catalogue, or a change to it, may be far larger than one message: it
// goes in parts (parts.go). A hello, snapshot or delta whose "more" flag
// is set continues in the next message, a snapshot part (kindExports) of
// the same generation after a hello or snapshot, a delta part of the same
// generations after a delta, and nothing else comes between; a part with
// "more" set carries at least one entry. The receiver applies an update
// only once its last part arrived, and refuses it as soon as the parts so
// far go over its budget.
//
// The hello also carries the sender's lease: the longest it will stay
// silent on the control stream. It sends a lease message whenever it has
// sent nothing for a quarter of the lease, and a receiver that gets
// nothing on the connection (no message, no packet: see leaseReader) for a
// whole lease closes the connection with CodeLeaseExpired,
// which withdraws the catalogue the connection carried. A connection
// going away carries two GOAWAYs from each side, stop then drained
// (closeIfDrained, conn.go).
//
// Every message is framed as
//
//	u8  kind
//	u24 length of the body (at most maxControlLen)
//	body
//
// hello body:   u8 version (3), u8-prefixed cluster, region, zone and
//               software version, u64 instance, u64 generation,
//               u32 lease in milliseconds, u8 more, export list
// exports body: u64 generation, u8 more, export list
// delta body:   u64 base generation, u64 generation, u8 more, export
//               list of upserts, key list of removals
// lease body:   empty
// goaway body:  empty
// bundle body: a trust bundle (bundle.go)
//
// An export list is u24-prefixed entries, each a u8-prefixed namespace, a
// u8-prefixed name and a u16-prefixed list of ports, each a u16 port and a
// u32 count of ready endpoints. A key list is u24-prefixed entries, each a
// u8-prefixed namespace and a u8-prefixed name.
//
// A receiver refuses a message, and closes the connection with
// CodeProtocol, if any entry or removal does not name its service by
// DNS-1123 labels, or lists a port 0, a port twice or more than
// MaxExportPorts ports (budget.go); it clamps ready counts to MaxReady.

// controlVersion is the hello's protocol version. Version 1 had no lease,
// no deltas and no endpoint counts; version 2 sent every catalogue and
// update in one message, so a catalogue of more than about 14,000 services
// with 60-character names could not be sent at all.
const controlVersion = 3

// errControlVersion reports a hello of another control protocol version.
var errControlVersion = errors.New("control protocol version mismatch")

// maxControlLen caps a control message body as received. A sender fills
// parts up to partLen, well below it.
const maxControlLen = 1 << 20

const (
	controlPrefixLen = 4
	exportPortLen    = 6 // u16 port, u32 ready
)

type msgKind uint8

const (
	kindHello   msgKind = 1
	kindExports msgKind = 2
	kindGoAway  msgKind = 3
	kindDelta   msgKind = 4
	kindLease   msgKind = 5
)

// kindNames label ewgw_tunnel_control_messages_received_total.
var kindNames = map[msgKind]string{
	kindHello:   "hello",
	kindExports: "exports",
	kindGoAway:  "goaway",
	kindDelta:   "delta",
	kindLease:   "lease",
	kindBundle:  "bundle",
}

// hello is the state a side announces: its identity in the cluster set, its
// lease and its catalogue. Instance tells two runs of one gateway apart, so
// generations are only compared within a run.
type hello struct {
	Cluster, Region, Zone, Version string
	Instance                       uint64
	Gen                            uint64
	LeaseMS                        uint32
	Exports                        []Export
}

// message is one decoded control message; hello carries the fields of
// kindHello, and Gen and Exports of kindExports; delta those of kindDelta.
// more is set on every part of an update but the last.
type message struct {
	kind  msgKind
	more  bool
	hello hello
	delta delta
	// bundle is kindBundle's (bundle.go).
	bundle Bundle
}

// appendMessage appends m's frame to b.
func appendMessage(b []byte, m message) ([]byte, error) {
	switch m.kind {
	case kindHello, kindExports, kindDelta, kindGoAway, kindLease, kindBundle:
	default:
		return b, fmt.Errorf("control message kind %d", m.kind)
	}
	start := len(b)
	f := cryptobyte.NewBuilder(b) // appends in place: no copy of the body
	f.AddUint8(uint8(m.kind))
	f.AddUint24LengthPrefixed(func(body *cryptobyte.Builder) { addBody(body, m) })
	out, err := f.Bytes()
	if err != nil {
		return b, fmt.Errorf("encode control message: %w", err)
	}
	if n := len(out) - start - controlPrefixLen; n > maxControlLen {
		return b, fmt.Errorf("control message of %d bytes over %d", n, maxControlLen)
	}
	return out, nil
}

// addBody adds the body of m, of a known kind.
func addBody(body *cryptobyte.Builder, m message) {
	switch m.kind {
	case kindHello:
		addHello(body, m.hello, m.more)
	case kindExports:
		body.AddUint64(m.hello.Gen)
		addMore(body, m.more)
		addExports(body, m.hello.Exports)
	case kindDelta:
		body.AddUint64(m.delta.Base)
		body.AddUint64(m.delta.Gen)
		addMore(body, m.more)
		addExports(body, m.delta.Upserts)
		addKeys(body, m.delta.Removed)
	case kindBundle:
		addBundle(body, m.bundle)
	}
}

// readMessage reads one framed message from r.
func readMessage(r io.Reader) (message, error) {
	var prefix [controlPrefixLen]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return message{}, err
	}
	n := int(prefix[1])<<16 | int(prefix[2])<<8 | int(prefix[3])
	if n > maxControlLen {
		return message{}, fmt.Errorf("%w: control message of %d bytes", ErrBadHeader, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return message{}, err
	}
	return decodeMessage(msgKind(prefix[0]), body)
}

// decodeMessage decodes a message body of the given kind.
func decodeMessage(kind msgKind, body []byte) (message, error) {
	s := cryptobyte.String(body)
	m := message{kind: kind}
	var ok bool
	switch kind {
	case kindHello:
		if v := helloVersion(body); v != controlVersion {
			return message{}, fmt.Errorf("%w: %w: hello of control protocol %d, want %d", ErrBadHeader, errControlVersion, v, controlVersion)
		}
		ok = decodeHello(&s, &m.hello, &m.more)
	case kindExports:
		ok = s.ReadUint64(&m.hello.Gen) && readMore(&s, &m.more) && readExports(&s, &m.hello.Exports)
	case kindDelta:
		ok = s.ReadUint64(&m.delta.Base) && s.ReadUint64(&m.delta.Gen) && readMore(&s, &m.more) &&
			readExports(&s, &m.delta.Upserts) && readKeys(&s, &m.delta.Removed)
	case kindGoAway, kindLease:
		ok = true
	case kindBundle:
		ok = readBundle(&s, &m.bundle)
	default:
		return message{}, fmt.Errorf("%w: control message kind %d", ErrBadHeader, kind)
	}
	if !ok || !s.Empty() {
		return message{}, fmt.Errorf("%w: malformed control message kind %d", ErrBadHeader, kind)
	}
	if err := m.sanitize(); err != nil {
		return message{}, fmt.Errorf("%w: control message kind %d: %w", ErrBadHeader, kind,
			&PolicyError{Reason: refuseBadExport, Code: CodeProtocol, Err: err})
	}
	return m, nil
}

// sanitize checks every entry a received message carries (checkExport) and
// clamps the ready counts it announces (MaxReady).
func (m *message) sanitize() error {
	for _, list := range [][]Export{m.hello.Exports, m.delta.Upserts} {
		for _, e := range list {
			if err := checkExport(e); err != nil {
				return err
			}
		}
		clampReady(list)
	}
	for _, k := range m.delta.Removed {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return nil
}

func addHello(b *cryptobyte.Builder, h hello, more bool) {
	b.AddUint8(controlVersion)
	for _, s := range []string{h.Cluster, h.Region, h.Zone, h.Version} {
		addString8(b, s)
	}
	b.AddUint64(h.Instance)
	b.AddUint64(h.Gen)
	b.AddUint32(h.LeaseMS)
	addMore(b, more)
	addExports(b, h.Exports)
}

// helloVersion returns the control protocol version a hello body starts
// with, 0 if it is empty. A later version may change everything after it.
func helloVersion(body []byte) uint8 {
	if len(body) == 0 {
		return 0
	}
	return body[0]
}

func decodeHello(s *cryptobyte.String, h *hello, more *bool) bool {
	var v uint8
	return s.ReadUint8(&v) && readString8(s, &h.Cluster) && readString8(s, &h.Region) &&
		readString8(s, &h.Zone) && readString8(s, &h.Version) &&
		s.ReadUint64(&h.Instance) && s.ReadUint64(&h.Gen) && s.ReadUint32(&h.LeaseMS) &&
		readMore(s, more) && readExports(s, &h.Exports)
}

func addMore(b *cryptobyte.Builder, more bool) {
	if more {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

// readMore reads the "more" flag: 0 or 1.
func readMore(s *cryptobyte.String, more *bool) bool {
	var v uint8
	if !s.ReadUint8(&v) || v > 1 {
		return false
	}
	*more = v == 1
	return true
}

func addExports(b *cryptobyte.Builder, exports []Export) {
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range exports {
			addString8(b, e.Service.Namespace)
			addString8(b, e.Service.Name)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, p := range e.Ports {
					b.AddUint16(p.Port)
					b.AddUint32(uint32(min(uint64(max(p.Ready, 0)), math.MaxUint32))) // as given; receivers clamp to MaxReady
				}
			})
		}
	})
}

func readExports(s *cryptobyte.String, out *[]Export) bool {
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) {
		return false
	}
	var exports []Export
	for !list.Empty() {
		var e Export
		var ports cryptobyte.String
		if !readString8(&list, &e.Service.Namespace) || !readString8(&list, &e.Service.Name) ||
			!list.ReadUint16LengthPrefixed(&ports) || len(ports)%exportPortLen != 0 {
			return false
		}
		if n := len(ports) / exportPortLen; n > 0 {
			e.Ports = make([]ExportPort, 0, n)
		}
		for !ports.Empty() {
			var p ExportPort
			var ready uint32
			ports.ReadUint16(&p.Port)
			ports.ReadUint32(&ready)
			p.Ready = int(ready)
			e.Ports = append(e.Ports, p)
		}
		exports = append(exports, e)
	}
	*out = exports
	return true
}

func addKeys(b *cryptobyte.Builder, keys []serviceKey) {
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, k := range keys {
			addString8(b, k.Namespace)
			addString8(b, k.Name)
		}
	})
}

func readKeys(s *cryptobyte.String, out *[]serviceKey) bool {
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) {
		return false
	}
	var keys []serviceKey
	for !list.Empty() {
		var k serviceKey
		if !readString8(&list, &k.Namespace) || !readString8(&list, &k.Name) {
			return false
		}
		keys = append(keys, k)
	}
	*out = keys
	return true
}
