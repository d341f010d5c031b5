package certgen

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ClusterPlaceholder is replaced by the cluster name in
// Plan.TrustDomainTemplate.
const ClusterPlaceholder = "{cluster}"

// Plan describes a set of clusters to mint identities for. Zero fields take
// the defaults given, applied by Generate.
type Plan struct {
	// Clusters names the clusters; at least one, each a DNS label.
	Clusters []string
	// TrustDomain, when set, is one trust domain shared by every cluster.
	TrustDomain string
	// TrustDomainTemplate derives each cluster's trust domain by replacing
	// "{cluster}". Used when TrustDomain is empty. Default
	// "{cluster}.ewgw.local".
	TrustDomainTemplate string
	// Federated gives every cluster its own root CA instead of one shared
	// root; each gateway then trusts the other clusters through their roots
	// as federated bundles. It needs a trust domain per cluster.
	Federated bool
	// Namespace and ServiceAccount of the gateway; its SPIFFE ID is
	// spiffe://<td>/ns/<Namespace>/sa/<ServiceAccount>. Default "ewgw" both.
	Namespace      string
	ServiceAccount string
	// SVIDTTL is the gateway SVIDs' lifetime. Default DefaultSVIDTTL (24h).
	SVIDTTL time.Duration
	// CATTL is the intermediate CAs' lifetime. Default DefaultCATTL (1 year).
	CATTL time.Duration
	// RootTTL is the root CAs' lifetime. Default DefaultRootTTL (10 years).
	RootTTL time.Duration
	// Now is the clock for validity periods. Default time.Now.
	Now func() time.Time
}

// Setup is what Generate minted.
type Setup struct {
	// Shared is the root shared by every cluster; nil when federated.
	Shared *CA
	// Clusters in the order planned.
	Clusters []*Cluster
}

// Cluster is one cluster's material.
type Cluster struct {
	// Name of the cluster.
	Name string
	// TrustDomain of the cluster's workloads and gateway.
	TrustDomain string
	// ID is the gateway's SPIFFE ID.
	ID string
	// Root is the cluster's root CA (the shared one unless federated).
	Root *CA
	// Intermediate is the cluster's CA, for Istio's plug-in CA and for the
	// gateway SVID.
	Intermediate *CA
	// SVID is the gateway's leaf and intermediate, PEM; SVIDKey its PKCS#8 key.
	SVID, SVIDKey []byte
	// Bundles maps every trust domain the gateway trusts, its own included,
	// to that domain's roots in PEM.
	Bundles map[string][]byte
}

func (p Plan) withDefaults() Plan {
	if p.TrustDomainTemplate == "" {
		p.TrustDomainTemplate = ClusterPlaceholder + ".ewgw.local"
	}
	if p.Namespace == "" {
		p.Namespace = "ewgw"
	}
	if p.ServiceAccount == "" {
		p.ServiceAccount = "ewgw"
	}
	if p.SVIDTTL <= 0 {
		p.SVIDTTL = DefaultSVIDTTL
	}
	if p.CATTL <= 0 {
		p.CATTL = DefaultCATTL
	}
	if p.RootTTL <= 0 {
		p.RootTTL = DefaultRootTTL
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return p
}

// trustDomains checks the plan and returns each cluster's trust domain.
func (p Plan) trustDomains() ([]string, error) {
	var errs []error
	if len(p.Clusters) == 0 {
		errs = append(errs, errors.New("no clusters"))
	}
	if p.TrustDomain == "" && !strings.Contains(p.TrustDomainTemplate, ClusterPlaceholder) {
		errs = append(errs, fmt.Errorf("trust domain template %q lacks %s (set a shared trust domain instead)", p.TrustDomainTemplate, ClusterPlaceholder))
	}
	if p.Federated && p.TrustDomain != "" && len(p.Clusters) > 1 {
		errs = append(errs, errors.New("federated clusters need a trust domain each, not a shared one"))
	}
	seen := map[string]bool{}
	tds := make([]string, len(p.Clusters))
	for i, c := range p.Clusters {
		if err := validateCluster(c); err != nil {
			errs = append(errs, err)
		}
		if seen[c] {
			errs = append(errs, fmt.Errorf("cluster %q listed twice", c))
		}
		seen[c] = true
		tds[i] = p.TrustDomain
		if tds[i] == "" {
			tds[i] = strings.ReplaceAll(p.TrustDomainTemplate, ClusterPlaceholder, c)
		}
		if err := ValidateTrustDomain(tds[i]); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", c, err))
		}
	}
	for _, seg := range []string{p.Namespace, p.ServiceAccount} {
		if err := ValidateSegment(seg); err != nil {
			errs = append(errs, err)
		}
	}
	return tds, errors.Join(errs...)
}

// validateCluster requires an RFC 1123 label: it becomes a directory name, a
// certificate locality and often part of a trust domain.
func validateCluster(c string) error {
	ok := c != "" && len(c) <= 63 && c[0] != '-' && c[len(c)-1] != '-'
	for _, r := range c {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}
	if !ok {
		return fmt.Errorf("cluster name %q: want a DNS label (a-z, 0-9, -): %w", c, ErrBadName)
	}
	return nil
}

// Generate mints roots, intermediates and gateway SVIDs for the plan.
func Generate(p Plan) (*Setup, error) {
	p = p.withDefaults()
	tds, err := p.trustDomains()
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	s := &Setup{}
	if !p.Federated {
		rootTD := ""
		if p.TrustDomain != "" || len(tds) == 1 {
			rootTD = tds[0]
		}
		s.Shared, err = NewRoot(RootOptions{TrustDomain: rootTD, TTL: p.RootTTL, Now: p.Now})
		if err != nil {
			return nil, err
		}
	}
	for i, name := range p.Clusters {
		c, err := p.cluster(s.Shared, name, tds[i])
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		s.Clusters = append(s.Clusters, c)
	}
	for _, c := range s.Clusters {
		c.Bundles = map[string][]byte{}
		for _, o := range s.Clusters {
			// With a shared root several domains map to the same root; the
			// binding of a bundle to its trust domain still matters.
			c.Bundles[o.TrustDomain] = o.Root.RootPEM()
		}
	}
	return s, nil
}

func (p Plan) cluster(shared *CA, name, td string) (*Cluster, error) {
	root := shared
	if root == nil {
		var err error
		root, err = NewRoot(RootOptions{CommonName: "ewgw root CA " + name, TrustDomain: td, TTL: p.RootTTL, Now: p.Now})
		if err != nil {
			return nil, err
		}
	}
	inter, err := root.NewIntermediate(IntermediateOptions{Cluster: name, TrustDomain: td, TTL: p.CATTL})
	if err != nil {
		return nil, err
	}
	id, err := GatewayID(td, p.Namespace, p.ServiceAccount)
	if err != nil {
		return nil, err
	}
	svid, key, err := inter.IssueSVID(id, p.SVIDTTL)
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: name, TrustDomain: td, ID: id, Root: root, Intermediate: inter, SVID: svid, SVIDKey: key}, nil
}
