// Package audience says which peer clusters may reach an exported service:
// the parsed form of the ewgw.io/export-to annotation and of export_to in
// the services file. The gateway checks it twice, against what the peering
// connection proves: when it sends a peer its catalogue (a service the peer
// may not reach is left out) and when the peer opens a stream.
package audience

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Annotation on a Service or its MCS ServiceExport names the audience of an
// exported service, as a comma-separated list of entries (see Parse).
const Annotation = "ewgw.io/export-to"

// Audience is who may reach one exported service. The zero Audience is
// everyone: every peer the gateway's peering.allow admits.
type Audience struct {
	clusters []string
	domains  []spiffeid.TrustDomain
	ids      []IDPattern // exact IDs and path globs
	text     string      // canonical form, for equality
}

// Peer is what a peering connection proves about the gateway at its other
// end: the configured name of the peer entry its authenticated SPIFFE ID
// matched, and that ID.
type Peer struct {
	Cluster string
	ID      string
}

// Parse reads audience entries. Each entry is one of
//
//   - a cluster: the name of a configured peer ("cluster-b");
//   - a trust domain, with its scheme: "spiffe://cluster-b.example";
//   - a SPIFFE ID or ID pattern: "spiffe://td/ns/*/sa/ewgw", whose path is
//     matched with path.Match, so "*" stays within one segment.
//
// No entries at all is the zero Audience, everyone. Every malformed entry is
// reported.
func Parse(entries []string) (Audience, error) {
	var a Audience
	var errs []error
	for _, e := range entries {
		if err := a.add(strings.TrimSpace(e)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Audience{}, err
	}
	slices.Sort(a.clusters)
	a.clusters = slices.Compact(a.clusters)
	slices.SortFunc(a.domains, func(x, y spiffeid.TrustDomain) int { return strings.Compare(x.Name(), y.Name()) })
	a.domains = slices.Compact(a.domains)
	byText := func(x, y IDPattern) int { return strings.Compare(x.String(), y.String()) }
	slices.SortFunc(a.ids, byText)
	a.ids = slices.CompactFunc(a.ids, func(x, y IDPattern) bool { return byText(x, y) == 0 })
	a.text = a.render()
	return a, nil
}

// ParseList reads a comma-separated list of entries, the annotation's form.
func ParseList(s string) (Audience, error) {
	return Parse(strings.Split(s, ","))
}

func (a *Audience) add(e string) error {
	switch {
	case e == "":
		return nil
	case strings.HasPrefix(e, "spiffe://") && !strings.Contains(strings.TrimPrefix(e, "spiffe://"), "/"):
		td, err := spiffeid.TrustDomainFromString(strings.TrimPrefix(e, "spiffe://"))
		if err != nil {
			return fmt.Errorf("audience entry %q: %w", e, err)
		}
		a.domains = append(a.domains, td)
		return nil
	case strings.HasPrefix(e, "spiffe://"):
		p, err := ParseIDPattern(e)
		if err != nil {
			return fmt.Errorf("audience entry %q: %w", e, err)
		}
		a.ids = append(a.ids, p)
		return nil
	case strings.Contains(e, "://"):
		return fmt.Errorf("audience entry %q: only spiffe:// URIs name trust domains and IDs", e)
	case !isClusterName(e):
		return fmt.Errorf("audience entry %q: a cluster name is lower-case letters, digits, '-' and '.'", e)
	}
	a.clusters = append(a.clusters, e)
	return nil
}

// isClusterName reports whether s is a plausible cluster name: what the
// gateway's own cluster setting and peer names accept.
func isClusterName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// Everyone reports whether a is the zero Audience: every allowed peer.
func (a Audience) Everyone() bool { return a.text == "" }

// Allows reports whether the peer p may reach the service.
func (a Audience) Allows(p Peer) bool {
	if a.Everyone() {
		return true
	}
	if p.Cluster != "" && slices.Contains(a.clusters, p.Cluster) {
		return true
	}
	id, err := spiffeid.FromString(p.ID)
	if err != nil {
		return false
	}
	if slices.Contains(a.domains, id.TrustDomain()) {
		return true
	}
	return slices.ContainsFunc(a.ids, func(p IDPattern) bool { return p.Matches(id) })
}

// String is the canonical comma-separated form: clusters, trust domains,
// then IDs, each sorted. Two audiences are equal when their strings are.
func (a Audience) String() string { return a.text }

// Equal reports whether a and b admit the same entries.
func (a Audience) Equal(b Audience) bool { return a.text == b.text }

func (a Audience) render() string {
	parts := slices.Clone(a.clusters)
	for _, td := range a.domains {
		parts = append(parts, td.IDString())
	}
	for _, p := range a.ids {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}
