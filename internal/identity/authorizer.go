package identity

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ewgw/ewgw/internal/audience"
)

// ErrEmptyPolicy reports an authorizer policy that allows no peer at all.
var ErrEmptyPolicy = errors.New("authorizer allows no peer: name at least one trust domain, id or id pattern")

// Authorizer decides which authenticated peers are accepted, by SPIFFE ID.
// A peer is accepted when any of these holds:
//
//   - its trust domain is one of the allowed trust domains;
//   - its ID equals one of the allowed IDs;
//   - its ID matches one of the allowed ID patterns.
//
// A pattern is spiffe://<trust-domain>/<path-glob>. The trust domain is
// literal. The path is matched with path.Match, so the globs apply within a
// path segment and never across a "/": "*" matches any run of characters
// within one segment, "?" any one character, and "[a-z]" a class. Thus
// spiffe://td/ns/*/sa/ewgw accepts service account ewgw in any namespace of
// td, but not spiffe://td/ns/a/b/sa/ewgw.
//
// Only peers whose chain verified against the bundle of their own trust
// domain reach the Authorizer; a trust domain without a bundle is never
// accepted whatever the policy says.
//
// The policy can be replaced at any time with Set; the next handshake,
// resumed ones included, sees the new policy. The zero Authorizer refuses
// every peer.
type Authorizer struct {
	p atomic.Pointer[policy]
}

type policy struct {
	domains  map[spiffeid.TrustDomain]bool
	ids      map[spiffeid.ID]bool
	patterns []audience.IDPattern
	// mentioned are trust domains named by an ID or a pattern, to tell
	// "untrusted_domain" from "id_not_allowed".
	mentioned map[spiffeid.TrustDomain]bool
}

// ParseAuthorizer returns an Authorizer with the given policy; see
// Authorizer for the syntax. Trust domains may be written "td" or
// "spiffe://td". Every malformed entry is reported.
func ParseAuthorizer(allowTrustDomains, allowIDs, allowIDPatterns []string) (*Authorizer, error) {
	a := &Authorizer{}
	if err := a.Set(allowTrustDomains, allowIDs, allowIDPatterns); err != nil {
		return nil, err
	}
	return a, nil
}

// Set replaces the policy, e.g. on a configuration reload. On error the
// previous policy stays in force.
func (a *Authorizer) Set(allowTrustDomains, allowIDs, allowIDPatterns []string) error {
	p, err := parsePolicy(allowTrustDomains, allowIDs, allowIDPatterns)
	if err != nil {
		return err
	}
	a.p.Store(p)
	return nil
}

func parsePolicy(domains, ids, patterns []string) (*policy, error) {
	p := &policy{
		domains:   map[spiffeid.TrustDomain]bool{},
		ids:       map[spiffeid.ID]bool{},
		mentioned: map[spiffeid.TrustDomain]bool{},
	}
	var errs []error
	for _, s := range domains {
		td, err := parseTrustDomain(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.domains[td] = true
	}
	for _, s := range ids {
		id, err := spiffeid.FromString(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("allowed id %q: %w", s, err))
			continue
		}
		p.ids[id] = true
		p.mentioned[id.TrustDomain()] = true
	}
	for _, s := range patterns {
		pat, err := parsePattern(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.patterns = append(p.patterns, pat)
		p.mentioned[pat.TrustDomain()] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(p.domains)+len(p.ids)+len(p.patterns) == 0 {
		return nil, ErrEmptyPolicy
	}
	return p, nil
}

// parseTrustDomain accepts "td" and "spiffe://td", but not an ID with a
// path, which would silently widen an ID into its whole trust domain.
func parseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	if rest, ok := strings.CutPrefix(s, "spiffe://"); ok && strings.Contains(rest, "/") {
		return spiffeid.TrustDomain{}, fmt.Errorf("allowed trust domain %q has a path: list it as an id", s)
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("allowed trust domain %q: %w", s, err)
	}
	return td, nil
}

func parsePattern(s string) (audience.IDPattern, error) {
	p, err := audience.ParseIDPattern(s)
	if err != nil {
		return p, fmt.Errorf("allowed id pattern %q: %w", s, err)
	}
	return p, nil
}

// trustDomains returns every trust domain the policy names, in no order.
func (a *Authorizer) trustDomains() []spiffeid.TrustDomain {
	var p *policy
	if a != nil {
		p = a.p.Load()
	}
	if p == nil {
		return nil
	}
	tds := slices.Collect(maps.Keys(p.domains))
	return slices.AppendSeq(tds, maps.Keys(p.mentioned))
}

// check returns "" when id is allowed, else the rejection reason.
func (a *Authorizer) check(id spiffeid.ID) string {
	if a == nil {
		return reasonUntrustedDomain
	}
	p := a.p.Load()
	if p == nil {
		return reasonUntrustedDomain
	}
	td := id.TrustDomain()
	if p.domains[td] || p.ids[id] {
		return ""
	}
	for _, pat := range p.patterns {
		if pat.Matches(id) {
			return ""
		}
	}
	if p.mentioned[td] {
		return reasonIDNotAllowed
	}
	return reasonUntrustedDomain
}
