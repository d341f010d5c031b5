package sni

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Extension code points.
const (
	extServerName        = 0      // RFC 6066 §3
	extALPN              = 16     // RFC 7301 §3.1
	extSupportedVersions = 43     // RFC 8446 §4.2.1
	extECH               = 0xfe0d // RFC 9849 §5
	echTypeOuter         = 0      // ECHClientHelloType outer
	nameTypeHostName     = 0
)

// parseHello parses a ClientHello body (RFC 8446 §4.1.2), after the 4-byte
// handshake header. It follows crypto/tls's clientHelloMsg.unmarshal where
// the two could disagree about the server name: duplicate extensions, a
// second host_name, an empty name or one with a trailing dot all make the
// hello malformed.
func parseHello(b []byte) (*ClientHello, error) {
	s := cryptobyte.String(b)
	var (
		h                                   ClientHello
		legacyVersion                       uint16
		random, sessionID, suites, compress cryptobyte.String
	)
	if !s.ReadUint16(&legacyVersion) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&compress) || len(compress) < 1 {
		return nil, fmt.Errorf("%w: bad fixed fields", ErrMalformed)
	}
	h.Versions = []uint16{legacyVersion}
	if s.Empty() {
		// TLS 1.2 and earlier may omit extensions (RFC 5246 §7.4.1.2).
		return &h, fmt.Errorf("%w: no extensions", ErrNoSNI)
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("%w: bad extension", ErrMalformed)
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
		}
		seen[typ] = true
		if err := h.parseExtension(typ, data); err != nil {
			return nil, err
		}
	}
	if h.ServerName == "" {
		return &h, ErrNoSNI
	}
	return &h, nil
}

func (h *ClientHello) parseExtension(typ uint16, data cryptobyte.String) error {
	var ok bool
	switch typ {
	case extServerName:
		ok = h.parseServerName(data)
	case extALPN:
		ok = h.parseALPN(data)
	case extSupportedVersions:
		ok = h.parseVersions(data)
	case extECH:
		var echType uint8
		ok = data.ReadUint8(&echType)
		h.ECHOuter = ok && echType == echTypeOuter
		return nil // the payload is opaque to us
	default:
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: bad extension %d", ErrMalformed, typ)
	}
	return nil
}

// parseServerName reads a ServerNameList (RFC 6066 §3). Names of unknown
// types are skipped; at most one host_name is allowed, and it must not end
// in a dot.
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

// parseALPN reads a ProtocolNameList (RFC 7301 §3.1).
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
// the legacy_version.
func (h *ClientHello) parseVersions(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || len(list) < 2 || len(list)%2 != 0 || !data.Empty() {
		return false
	}
	h.Versions = h.Versions[:0]
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		h.Versions = append(h.Versions, v)
	}
	return true
}
