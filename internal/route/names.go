package route

import (
	"cmp"
	"fmt"
	"github.com/ewgw/ewgw/internal/model"
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

// normalize lowercases the ASCII letters of a configured DNS name and drops
// one trailing dot; DNS names are case-insensitive (RFC 4343).
func normalize(name string) string {
	return strings.TrimSuffix(foldASCII(name), ".")
}

// foldASCII lowercases ASCII letters only. strings.ToLower would also fold
// non-ASCII letters onto ASCII ones (the Kelvin sign U+212A onto "k"), so a
// name the gateway refuses could match one it serves.
func foldASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if c := b[j]; 'A' <= c && c <= 'Z' {
			b[j] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// match maps a server name to a target. Port 0 means "the service's default
// port". byHost reports a target named by a host rule. It returns a Reason
// when the name is not one the gateway serves.
func (m *nameMatcher) match(serverName string) (t Target, byHost bool, reason Reason) {
	switch {
	case serverName == "":
		return Target{}, false, ReasonNoSNI
	case isIPLiteral(serverName):
		return Target{}, false, ReasonIPLiteral
	}
	name := foldASCII(serverName)
	if rest, ok := strings.CutPrefix(name, istioPrefix); ok {
		t, reason := m.matchIstio(rest)
		return t, false, reason
	}
	if !IsHostName(name) {
		return Target{}, false, ReasonInvalidName
	}
	if t, ok := m.exact[name]; ok {
		return t, true, ""
	}
	for _, w := range m.wild {
		if len(name) > len(w.dotDomain) && strings.HasSuffix(name, w.dotDomain) {
			return w.target, true, ""
		}
	}
	key, ok := m.serviceName(name)
	if !ok {
		return Target{}, false, ReasonUnknownName
	}
	return Target{Service: key}, false, ""
}

// maxHostName is the longest host name in its text form (RFC 1035 §2.3.4).
const maxHostName = 253

// IsHostName reports whether name is a lower-case host name: dot-separated
// labels of 1 to 63 ASCII letters, digits and hyphens, no hyphen first or
// last in a label, at most 253 bytes, no trailing dot (RFC 1123 §2.1,
// RFC 6066 §3). Internationalised names qualify in their A-label form
// ("xn--..."), the only form SNI carries.
func IsHostName(name string) bool {
	if name == "" || len(name) > maxHostName {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if !isLabel(label) {
			return false
		}
	}
	return true
}

// isLabel reports whether s is one lower-case LDH label.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLDH(s[i]) {
			return false
		}
	}
	return true
}

// matchIstio parses the remainder of Istio's "outbound_.PORT_.SUBSET_.HOST".
// SUBSET is "_" when absent. Subsets select pods by label inside the
// destination cluster, which a passthrough gateway cannot see, so any subset
// routes to the whole service.
func (m *nameMatcher) matchIstio(rest string) (Target, Reason) {
	portLabel, rest, ok1 := strings.Cut(rest, ".")
	subset, host, ok2 := strings.Cut(rest, ".")
	portStr, ok3 := strings.CutSuffix(portLabel, "_")
	if !ok1 || !ok2 || !ok3 || !isDigits(portStr) || (subset != "_" && !isLabel(strings.TrimSuffix(subset, "_"))) || !IsHostName(host) {
		return Target{}, ReasonInvalidName
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return Target{}, ReasonUnknownName
	}
	key, ok := m.serviceName(host)
	if !ok {
		return Target{}, ReasonUnknownName
	}
	return Target{Service: key, Port: uint16(port)}, ""
}

// isLDH reports whether c is a lower-case letter, a digit or a hyphen.
func isLDH(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' }

// isDigits reports whether s is one to five ASCII digits.
func isDigits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// serviceName recognises "name.ns.svc.<cluster domain>", "name.ns.<suffix>"
// and the bare "name.ns".
func (m *nameMatcher) serviceName(name string) (model.ServiceKey, bool) {
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
func splitNameNS(s string) (model.ServiceKey, bool) {
	name, ns, ok := strings.Cut(s, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return model.ServiceKey{}, false
	}
	return model.ServiceKey{Namespace: ns, Name: name}, true
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
	if !IsHostName(name) {
		return fmt.Errorf("host match %q: want an exact host name or \"*.domain\" (letters, digits and '-' in dot-separated labels)", s)
	}
	return nil
}
