package route

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Names configures which server names the gateway understands. The zero value
// understands the built-in forms for the default cluster domains.
type Names struct {
	// ClusterDomains are the Kubernetes DNS zones recognised in
	// "name.ns.svc.<domain>". Default: cluster.local and clusterset.local
	// (the Multi-Cluster Services zone, KEP-1645).
	ClusterDomains []string
	// Suffixes are extra zones recognised as "name.ns.<suffix>".
	Suffixes []string
	// Hosts map exact names or "*.domain" wildcards to a target. A wildcard
	// matches one or more labels before the domain; the longest matching
	// domain wins, and an exact name beats any wildcard.
	Hosts []HostRule
	// ImportSuffix is the suffix of the mirror Services the gateway keeps
	// for imported services: "web-global.shop" names "web.shop" when no
	// service "web-global" is known. Empty: no mirrors.
	ImportSuffix string
}

// HostRule maps an exact server name or a "*.domain" wildcard to a target.
// A zero Port means the service's default port.
type HostRule struct {
	Match  string
	Target Target
}

// DefaultClusterDomains are used when Names.ClusterDomains is empty.
var DefaultClusterDomains = []string{"cluster.local", "clusterset.local"}

// istioPrefix starts Istio's mTLS SNI form "outbound_.PORT_.SUBSET_.HOST".
const istioPrefix = "outbound_."

// nameMatcher is the compiled form of Names.
type nameMatcher struct {
	domains  []string // ".svc.<domain>", longest first
	suffixes []string // ".<suffix>", longest first
	exact    map[string]Target
	wild     []wildRule // longest domain first
	mirror   string     // "-<ImportSuffix>", or empty
}

type wildRule struct {
	dotDomain string // ".example.com"
	target    Target
}

func compileNames(n Names) nameMatcher {
	m := nameMatcher{exact: map[string]Target{}}
	if n.ImportSuffix != "" {
		m.mirror = "-" + normalize(n.ImportSuffix)
	}
	domains := n.ClusterDomains
	if len(domains) == 0 {
		domains = DefaultClusterDomains
	}
	for _, d := range domains {
		m.domains = append(m.domains, ".svc."+normalize(d))
	}
	for _, s := range n.Suffixes {
		m.suffixes = append(m.suffixes, "."+normalize(s))
	}
	for _, h := range n.Hosts {
		name := normalize(h.Match)
		if d, ok := strings.CutPrefix(name, "*"); ok {
			m.wild = append(m.wild, wildRule{dotDomain: d, target: h.Target})
			continue
		}
		m.exact[name] = h.Target
	}
	byLenDesc := func(a, b string) int { return cmp.Compare(len(b), len(a)) }
	slices.SortFunc(m.domains, byLenDesc)
	slices.SortFunc(m.suffixes, byLenDesc)
	slices.SortFunc(m.wild, func(a, b wildRule) int { return byLenDesc(a.dotDomain, b.dotDomain) })
	return m
}

// normalize lowercases a DNS name and drops one trailing dot; DNS names are
// case-insensitive (RFC 4343) and SNI carries no trailing dot (RFC 6066 §3).
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// match maps a server name to a target. Port 0 means "the service's default
// port". It returns a Reason when the name is not one the gateway serves.
func (m *nameMatcher) match(serverName string) (Target, Reason) {
	name := normalize(serverName)
	switch {
	case name == "":
		return Target{}, ReasonNoSNI
	case isIPLiteral(name):
		return Target{}, ReasonIPLiteral
	}
	if t, ok := m.exact[name]; ok {
		return t, ""
	}
	for _, w := range m.wild {
		if len(name) > len(w.dotDomain) && strings.HasSuffix(name, w.dotDomain) {
			return w.target, ""
		}
	}
	if rest, ok := strings.CutPrefix(name, istioPrefix); ok {
		return m.matchIstio(rest)
	}
	key, ok := m.serviceName(name)
	if !ok {
		return Target{}, ReasonUnknownName
	}
	return Target{Service: key}, ""
}

// matchIstio parses the remainder of Istio's "outbound_.PORT_.SUBSET_.HOST".
// SUBSET is "_" when absent. Subsets select pods by label inside the
// destination cluster, which a passthrough gateway cannot see, so any subset
// routes to the whole service.
func (m *nameMatcher) matchIstio(rest string) (Target, Reason) {
	portLabel, rest, ok1 := strings.Cut(rest, ".")
	_, host, ok2 := strings.Cut(rest, ".")
	portStr, ok3 := strings.CutSuffix(portLabel, "_")
	port, err := strconv.ParseUint(portStr, 10, 16)
	if !ok1 || !ok2 || !ok3 || err != nil || port == 0 {
		return Target{}, ReasonUnknownName
	}
	key, ok := m.serviceName(host)
	if !ok {
		return Target{}, ReasonUnknownName
	}
	return Target{Service: key, Port: uint16(port)}, ""
}

// serviceName recognises "name.ns.svc.<cluster domain>", "name.ns.<suffix>"
// and the bare "name.ns".
func (m *nameMatcher) serviceName(name string) (ServiceKey, bool) {
	for _, d := range m.domains {
		if rest, ok := strings.CutSuffix(name, d); ok {
			return splitNameNS(rest)
		}
	}
	for _, s := range m.suffixes {
		if rest, ok := strings.CutSuffix(name, s); ok {
			return splitNameNS(rest)
		}
	}
	return splitNameNS(name)
}

// splitNameNS splits exactly two non-empty labels "name.ns".
func splitNameNS(s string) (ServiceKey, bool) {
	name, ns, ok := strings.Cut(s, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return ServiceKey{}, false
	}
	return ServiceKey{Namespace: ns, Name: name}, true
}

// isIPLiteral reports whether name is an IPv4 or IPv6 literal, with or without
// brackets. RFC 6066 §3 forbids literal addresses in SNI; the gateway never
// routes them.
func isIPLiteral(name string) bool {
	_, err := netip.ParseAddr(strings.Trim(name, "[]"))
	return err == nil
}

// validateHostMatch reports a problem with a HostRule.Match pattern, or nil.
func validateHostMatch(s string) error {
	name := normalize(s)
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name = rest
	}
	if name == "" || strings.ContainsAny(name, "* /:") {
		return fmt.Errorf("host match %q: want an exact DNS name or \"*.domain\"", s)
	}
	return nil
}
