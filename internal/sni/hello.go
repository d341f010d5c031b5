package sni

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// ClientHello is what Peek learned from a ClientHello.
type ClientHello struct {
	// ServerName is the host_name from the server_name extension
	// (RFC 6066 §3), exactly as sent: not lowercased, and an IP literal is
	// returned as is. It is "" when the hello has none.
	ServerName string
	// ALPN lists the offered application protocols in the client's order
	// (RFC 7301 §3.1).
	ALPN []string
	// Versions lists the supported_versions extension (RFC 8446 §4.2.1) in
	// the client's order, GREASE values included, or holds just the
	// legacy_version when that extension is absent.
	Versions []uint16
	// ECHOuter reports an encrypted_client_hello extension of type outer
	// (RFC 9849 §5). ServerName is then the client-facing server's public
	// name; the name the client wants is encrypted.
	ECHOuter bool
	// Raw is every byte read from the reader, record headers included, to
	// be replayed upstream unchanged.
	Raw []byte
}

// Extension code points and constants.
const (
	extServerName        = 0      // RFC 6066 §3
	extALPN              = 16     // RFC 7301 §3.1
	extSupportedVersions = 43     // RFC 8446 §4.2.1
	extECH               = 0xfe0d // RFC 9849 §5
	echTypeOuter         = 0      // ECHClientHelloType outer, RFC 9849 §5
	nameTypeHostName     = 0      // NameType host_name, RFC 6066 §3
)

// parseHello parses a ClientHello body (RFC 8446 §4.1.2, RFC 5246
// §7.4.1.2), the handshake message after its 4-byte header.
//
// It mirrors crypto/tls's clientHelloMsg.unmarshal wherever the two could
// disagree about the server name, ALPN or versions: duplicate extensions, a
// second host_name, an empty name or one with a trailing dot all make the
// hello malformed. Like crypto/tls it is lenient about fields it does not
// use (an empty cipher_suites list, a long legacy_session_id); the server
// rejects those, and routing them costs nothing.
func parseHello(b []byte) (*ClientHello, error) {
	s := cryptobyte.String(b)
	var (
		h                                 ClientHello
		legacyVersion                     uint16
		sessionID, suites, compress, exts cryptobyte.String
	)
	if !s.ReadUint16(&legacyVersion) || !s.Skip(32) || // legacy_version, random
		!s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&compress) {
		return nil, fmt.Errorf("%w: bad fixed fields", ErrMalformed)
	}
	h.Versions = []uint16{legacyVersion}
	if s.Empty() {
		// Hellos before TLS 1.3 may omit extensions (RFC 5246 §7.4.1.2).
		return &h, fmt.Errorf("%w: no extensions", ErrNoSNI)
	}
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	// The types seen, for the duplicate check below; real hellos carry
	// about 10-20 extensions, so this needs no allocation.
	var typesBuf [32]uint16
	types := typesBuf[:0]
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("%w: bad extension", ErrMalformed)
		}
		types = append(types, typ)
		if !h.parseExtension(typ, data) {
			return nil, fmt.Errorf("%w: bad extension %d", ErrMalformed, typ)
		}
	}
	// There MUST NOT be more than one extension of the same type
	// (RFC 8446 §4.2). Sorting keeps the check O(n log n) for any count.
	slices.Sort(types)
	for i := 1; i < len(types); i++ {
		if types[i] == types[i-1] {
			return nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, types[i])
		}
	}
	if h.ServerName == "" {
		return &h, fmt.Errorf("%w: no host_name", ErrNoSNI)
	}
	return &h, nil
}

// parseExtension records the extensions Peek reports and skips the rest.
// It reports false for a malformed one.
func (h *ClientHello) parseExtension(typ uint16, data cryptobyte.String) bool {
	switch typ {
	case extServerName:
		return h.parseServerName(data)
	case extALPN:
		return h.parseALPN(data)
	case extSupportedVersions:
		return h.parseVersions(data)
	case extECH:
		// The payload is opaque to a router; only the type matters. Like
		// crypto/tls, leave its validation to the server.
		var echType uint8
		h.ECHOuter = data.ReadUint8(&echType) && echType == echTypeOuter
	}
	return true
}

// parseServerName reads a ServerNameList (RFC 6066 §3). Names of unknown
// types are skipped. As in crypto/tls, an empty name, a second host_name and
// a host_name with a trailing dot ("The hostname is represented ... without
// a trailing dot") make the extension malformed.
func (h *ClientHello) parseServerName(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return false
	}
	for !list.Empty() {
		var typ uint8
		var name cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
			return false
		}
		if typ != nameTypeHostName {
			continue
		}
		if h.ServerName != "" || strings.HasSuffix(string(name), ".") {
			return false
		}
		h.ServerName = string(name)
	}
	return true
}

// parseALPN reads a ProtocolNameList (RFC 7301 §3.1): a non-empty list of
// non-empty names.
func (h *ClientHello) parseALPN(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return false
	}
	for !list.Empty() {
		var proto cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
			return false
		}
		h.ALPN = append(h.ALPN, string(proto))
	}
	return true
}

// parseVersions reads supported_versions (RFC 8446 §4.2.1), which replaces
// the legacy_version: a non-empty list of uint16 versions.
func (h *ClientHello) parseVersions(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 || !data.Empty() {
		return false
	}
	h.Versions = make([]uint16, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		h.Versions = append(h.Versions, v)
	}
	return true
}
