package tunnel

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// HeaderVersion is the stream header version this code writes and reads.
const HeaderVersion = 1

// MaxHeaderLen caps an encoded header, prefix included. A version 1 header
// with every field at its limit is about 1 KiB; the cap leaves room for later
// versions while bounding what a receiver reads before refusing.
const MaxHeaderLen = 4096

// headerPrefixLen is the version byte plus the two-byte body length.
const headerPrefixLen = 3

// Address families in the header's client address.
const (
	familyNone = 0
	familyIPv4 = 4
	familyIPv6 = 6
)

// Header is the first thing the opener writes on a data stream. It names the
// service the stream is for and carries what the receiving gateway may log or
// authorize on.
//
// Version 1 wire format, all integers big-endian:
//
//	u8  version (1)
//	u16 length of the rest
//	u8-prefixed namespace   (a DNS-1123 label: 1..63 bytes)
//	u8-prefixed name        (a DNS-1123 label)
//	u16 port                (not 0)
//	u8-prefixed SNI         (0..255 bytes)
//	u8-prefixed source cluster (0..255 bytes)
//	u8  client family: 0 (none), 4 or 6
//	    then 4 or 16 address bytes and a u16 port, unless family is 0
//
// Trailing bytes are an error: a later format gets a new version.
type Header struct {
	// Namespace is the target service's namespace.
	Namespace string
	// Name is the target service's name.
	Name string
	// Port is the target service port.
	Port uint16
	// SNI is the server name the client sent, for logs only.
	SNI string
	// SourceCluster is the opener's cluster name.
	SourceCluster string
	// Client is the original client's address, in the source cluster's
	// address space; zero when unknown. An IPv6 zone is not carried.
	Client netip.AddrPort
}

// AppendBinary appends h's encoding to b. It fails when a field is empty
// where it must not be, or too long.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.checkTarget(); err != nil {
		return b, err
	}
	var body cryptobyte.Builder
	for _, s := range []string{h.Namespace, h.Name} {
		addString8(&body, s)
	}
	body.AddUint16(h.Port)
	addString8(&body, h.SNI)
	addString8(&body, h.SourceCluster)
	addAddrPort(&body, h.Client)
	raw, err := body.Bytes()
	if err != nil {
		return b, fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	b = append(b, HeaderVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(raw)))
	return append(b, raw...), nil
}

// UnmarshalBinary decodes a complete header, prefix included.
func (h *Header) UnmarshalBinary(b []byte) error {
	n, err := headerBodyLen(b)
	if err != nil {
		return err
	}
	if len(b) != headerPrefixLen+n {
		return fmt.Errorf("%w: length %d, prefix says %d", ErrBadHeader, len(b), headerPrefixLen+n)
	}
	return h.decodeBody(b[headerPrefixLen:])
}

// headerBodyLen checks a header prefix and returns the body length.
func headerBodyLen(prefix []byte) (int, error) {
	if len(prefix) < headerPrefixLen {
		return 0, fmt.Errorf("%w: short prefix", ErrBadHeader)
	}
	if prefix[0] != HeaderVersion {
		return 0, fmt.Errorf("%w: header version %d", ErrUnsupportedVersion, prefix[0])
	}
	n := int(binary.BigEndian.Uint16(prefix[1:]))
	if headerPrefixLen+n > MaxHeaderLen {
		return 0, fmt.Errorf("%w: length %d over %d", ErrBadHeader, headerPrefixLen+n, MaxHeaderLen)
	}
	return n, nil
}

func (h *Header) decodeBody(b []byte) error {
	s := cryptobyte.String(b)
	var d Header
	ok := readString8(&s, &d.Namespace) && readString8(&s, &d.Name) &&
		s.ReadUint16(&d.Port) && readString8(&s, &d.SNI) &&
		readString8(&s, &d.SourceCluster) && readAddrPort(&s, &d.Client)
	switch {
	case !ok:
		return fmt.Errorf("%w: truncated or malformed", ErrBadHeader)
	case !s.Empty():
		return fmt.Errorf("%w: %d trailing bytes", ErrBadHeader, len(s))
	}
	if err := d.checkTarget(); err != nil {
		return err
	}
	*h = d
	return nil
}

// checkTarget checks the service a header names: namespace and name are
// DNS-1123 labels, as every Kubernetes namespace and service name is, and
// the port is not 0.
func (h Header) checkTarget() error {
	if !isLabel(h.Namespace) || !isLabel(h.Name) || h.Port == 0 {
		return fmt.Errorf("%w: namespace and name must be DNS-1123 labels, and port not 0", ErrBadHeader)
	}
	return nil
}

// readHeader reads one header from r: the prefix, then exactly the body it
// announces, so no byte after the header is consumed. The body's buffer
// is allocated once the prefix has arrived, at the size it announces: a
// stream that sends nothing costs no buffer.
func readHeader(r io.Reader) (Header, error) {
	var prefix [headerPrefixLen]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return Header{}, fmt.Errorf("%w: read prefix: %w", ErrBadHeader, err)
	}
	n, err := headerBodyLen(prefix[:])
	if err != nil {
		return Header{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("%w: read body: %w", ErrBadHeader, err)
	}
	var h Header
	return h, h.decodeBody(body)
}

func addString8(b *cryptobyte.Builder, s string) {
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

func readString8(s *cryptobyte.String, out *string) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = string(v)
	return true
}

func addAddrPort(b *cryptobyte.Builder, ap netip.AddrPort) {
	a := ap.Addr().WithZone("")
	switch {
	case !a.IsValid():
		b.AddUint8(familyNone)
		return
	case a.Is4():
		b.AddUint8(familyIPv4)
	default:
		b.AddUint8(familyIPv6)
	}
	b.AddBytes(a.AsSlice())
	b.AddUint16(ap.Port())
}

func readAddrPort(s *cryptobyte.String, out *netip.AddrPort) bool {
	var family uint8
	if !s.ReadUint8(&family) {
		return false
	}
	var n int
	switch family {
	case familyNone:
		*out = netip.AddrPort{}
		return true
	case familyIPv4:
		n = 4
	case familyIPv6:
		n = 16
	default:
		return false
	}
	var raw []byte
	var port uint16
	if !s.ReadBytes(&raw, n) || !s.ReadUint16(&port) {
		return false
	}
	a, _ := netip.AddrFromSlice(raw)
	*out = netip.AddrPortFrom(a, port)
	return true
}
