package audience

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// IDPattern is a SPIFFE ID pattern, spiffe://<trust-domain>/<path-glob>:
// the trust domain is literal, and the path is matched with path.Match, so
// "*" matches within one segment and never across a "/"
// (spiffe://td/ns/*/sa/ewgw). A path without glob characters is an exact
// ID. Peering's allow list and export audiences both use it.
type IDPattern struct {
	td   spiffeid.TrustDomain
	glob string // the path, starting with "/"
}

// ParseIDPattern parses spiffe://<trust-domain>/<path-glob>.
func ParseIDPattern(s string) (IDPattern, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	tdName, glob, hasPath := strings.Cut(rest, "/")
	if !ok || !hasPath || glob == "" {
		return IDPattern{}, errors.New("want spiffe://<trust-domain>/<path-glob>")
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return IDPattern{}, err
	}
	glob = "/" + glob
	if _, err := path.Match(glob, ""); err != nil {
		return IDPattern{}, fmt.Errorf("bad pattern: %w", err)
	}
	if strings.Contains(glob, "//") || strings.HasSuffix(glob, "/") {
		return IDPattern{}, errors.New("empty path segment")
	}
	return IDPattern{td: td, glob: glob}, nil
}

// TrustDomain is the pattern's trust domain.
func (p IDPattern) TrustDomain() spiffeid.TrustDomain { return p.td }

// Matches reports whether id is in the pattern's trust domain and its path
// matches the glob.
func (p IDPattern) Matches(id spiffeid.ID) bool {
	if id.TrustDomain() != p.td {
		return false
	}
	ok, _ := path.Match(p.glob, id.Path())
	return ok
}

// String is the pattern as written.
func (p IDPattern) String() string { return p.td.IDString() + p.glob }
