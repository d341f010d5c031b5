package certgen

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadName reports a trust domain, SPIFFE ID or path segment that the
// SPIFFE ID specification (spiffe/spiffe standards/SPIFFE-ID.md §2) does not
// allow.
var ErrBadName = errors.New("invalid spiffe name")

// ValidateTrustDomain checks a trust domain name: lowercase letters, digits,
// dots, dashes and underscores (SPIFFE-ID §2.1).
func ValidateTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain is empty: %w", ErrBadName)
	}
	for _, c := range td {
		if !tdChar(c) {
			return fmt.Errorf("trust domain %q: character %q not allowed (use a-z 0-9 . - _): %w", td, c, ErrBadName)
		}
	}
	return nil
}

// ValidateSegment checks one SPIFFE ID path segment: letters, digits, dots,
// dashes and underscores, and neither "." nor ".." (SPIFFE-ID §2.2).
func ValidateSegment(seg string) error {
	if seg == "" || seg == "." || seg == ".." {
		return fmt.Errorf("path segment %q: %w", seg, ErrBadName)
	}
	for _, c := range seg {
		if !tdChar(c) && (c < 'A' || c > 'Z') {
			return fmt.Errorf("path segment %q: character %q not allowed: %w", seg, c, ErrBadName)
		}
	}
	return nil
}

// tdChar reports whether c may appear in a trust domain; path segments also
// allow upper-case letters.
func tdChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// ParseID parses and checks a workload SPIFFE ID spiffe://<td>/<path>; the
// path must not be empty.
func ParseID(id string) (*url.URL, error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return nil, fmt.Errorf("spiffe id %q: want spiffe://<trust-domain>/<path>: %w", id, ErrBadName)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := ValidateTrustDomain(td); err != nil {
		return nil, fmt.Errorf("spiffe id %q: %w", id, err)
	}
	if path == "" {
		return nil, fmt.Errorf("spiffe id %q: an svid needs a non-empty path: %w", id, ErrBadName)
	}
	for seg := range strings.SplitSeq(path, "/") {
		if err := ValidateSegment(seg); err != nil {
			return nil, fmt.Errorf("spiffe id %q: %w", id, err)
		}
	}
	return &url.URL{Scheme: "spiffe", Host: td, Path: "/" + path}, nil
}

// GatewayID returns the Kubernetes-style SPIFFE ID
// spiffe://<td>/ns/<namespace>/sa/<serviceAccount>, the form Istio, SPIRE's
// default ClusterSPIFFEID template and csi-driver-spiffe all use.
func GatewayID(td, namespace, serviceAccount string) (string, error) {
	for _, seg := range []string{namespace, serviceAccount} {
		if err := ValidateSegment(seg); err != nil {
			return "", err
		}
	}
	id := "spiffe://" + td + "/ns/" + namespace + "/sa/" + serviceAccount
	if _, err := ParseID(id); err != nil {
		return "", err
	}
	return id, nil
}
