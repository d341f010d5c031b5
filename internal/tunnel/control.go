package tunnel

import (
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// The control stream is the first bidirectional stream the dialer opens on
// a connection (stream 0, RFC 9000 §2.1). Each side sends a hello first; the
// connection carries data streams only once both hellos have arrived. Later
// messages update the export list or announce a graceful shutdown.
//
// Every message is framed as
//
//	u8  kind
//	u24 length of the body (at most maxControlLen)
//	body
//
// hello body:   u8 version (1), u8-prefixed cluster, region, zone and
//               software version, u64 instance, u64 generation, export list
// exports body: u64 generation, export list
// goaway body:  empty
//
// An export list is u24-prefixed entries, each a u8-prefixed namespace, a
// u8-prefixed name and a u16-prefixed list of u16 ports.

// controlVersion is the hello's protocol version.
const controlVersion = 1

// maxControlLen caps a control message body: about 10 000 exports with a few
// ports each.
const maxControlLen = 1 << 20

const controlPrefixLen = 4

type msgKind uint8

const (
	kindHello   msgKind = 1
	kindExports msgKind = 2
	kindGoAway  msgKind = 3
)

// Export is an exported service as announced to peers.
type Export struct {
	// Namespace is the service's namespace.
	Namespace string
	// Name is the service's name.
	Name string
	// Ports are the exported service ports.
	Ports []uint16
}

// hello is the state a side announces: its identity in the cluster set and
// its exports. Instance tells two runs of one gateway apart, so generations
// are only compared within a run.
type hello struct {
	Cluster, Region, Zone, Version string
	Instance                       uint64
	Gen                            uint64
	Exports                        []Export
}

// message is one decoded control message; hello carries the fields of
// kindHello, and Gen and Exports of kindExports.
type message struct {
	kind  msgKind
	hello hello
}

// appendMessage appends m's frame to b.
func appendMessage(b []byte, m message) ([]byte, error) {
	var body cryptobyte.Builder
	switch m.kind {
	case kindHello:
		body.AddUint8(controlVersion)
		for _, s := range []string{m.hello.Cluster, m.hello.Region, m.hello.Zone, m.hello.Version} {
			addString8(&body, s)
		}
		body.AddUint64(m.hello.Instance)
		body.AddUint64(m.hello.Gen)
		addExports(&body, m.hello.Exports)
	case kindExports:
		body.AddUint64(m.hello.Gen)
		addExports(&body, m.hello.Exports)
	case kindGoAway:
	default:
		return b, fmt.Errorf("control message kind %d", m.kind)
	}
	raw, err := body.Bytes()
	if err != nil {
		return b, fmt.Errorf("encode control message: %w", err)
	}
	if len(raw) > maxControlLen {
		return b, fmt.Errorf("control message of %d bytes over %d", len(raw), maxControlLen)
	}
	b = append(b, byte(m.kind), byte(len(raw)>>16), byte(len(raw)>>8), byte(len(raw)))
	return append(b, raw...), nil
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
		ok = decodeHello(&s, &m.hello)
	case kindExports:
		ok = s.ReadUint64(&m.hello.Gen) && readExports(&s, &m.hello.Exports)
	case kindGoAway:
		ok = true
	default:
		return message{}, fmt.Errorf("%w: control message kind %d", ErrBadHeader, kind)
	}
	if !ok || !s.Empty() {
		return message{}, fmt.Errorf("%w: malformed control message kind %d", ErrBadHeader, kind)
	}
	return m, nil
}

func decodeHello(s *cryptobyte.String, h *hello) bool {
	var v uint8
	if !s.ReadUint8(&v) {
		return false
	}
	if v != controlVersion {
		// A later version may change everything after this byte.
		return false
	}
	return readString8(s, &h.Cluster) && readString8(s, &h.Region) &&
		readString8(s, &h.Zone) && readString8(s, &h.Version) &&
		s.ReadUint64(&h.Instance) && s.ReadUint64(&h.Gen) && readExports(s, &h.Exports)
}

func addExports(b *cryptobyte.Builder, exports []Export) {
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range exports {
			addString8(b, e.Namespace)
			addString8(b, e.Name)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, p := range e.Ports {
					b.AddUint16(p)
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
		if !readString8(&list, &e.Namespace) || !readString8(&list, &e.Name) ||
			!list.ReadUint16LengthPrefixed(&ports) || len(ports)%2 != 0 {
			return false
		}
		for !ports.Empty() {
			var p uint16
			ports.ReadUint16(&p)
			e.Ports = append(e.Ports, p)
		}
		exports = append(exports, e)
	}
	*out = exports
	return true
}

// cloneExports deep-copies an export list, so callers never share slices
// with the tunnel.
// exportsEqual reports whether a and b list the same exports in the same
// order, port order included (the first port is the default).
func exportsEqual(a, b []Export) bool {
	return slices.EqualFunc(a, b, func(x, y Export) bool {
		return x.Namespace == y.Namespace && x.Name == y.Name && slices.Equal(x.Ports, y.Ports)
	})
}

func cloneExports(in []Export) []Export {
	if in == nil {
		return nil
	}
	out := make([]Export, len(in))
	for i, e := range in {
		out[i] = Export{Namespace: e.Namespace, Name: e.Name, Ports: slices.Clone(e.Ports)}
	}
	return out
}
