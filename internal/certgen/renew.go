package certgen

import (
	"crypto/x509"
	"fmt"
	"time"
)

// Renewal is what RenewCluster needs: the root (with its key) the cluster's
// intermediate chains to, the intermediate being replaced, and the
// gateway's SPIFFE ID.
type Renewal struct {
	// Root is the cluster's root CA, Cert and Key set.
	Root *CA
	// Old is the intermediate being replaced; the new one keeps its
	// cluster (subject Locality) and trust domain (URI SAN).
	Old *x509.Certificate
	// ID is the gateway's SPIFFE ID, for a new file-source SVID.
	ID string
	// CATTL is the new intermediate's lifetime. Default DefaultCATTL.
	CATTL time.Duration
	// SVIDTTL is the new SVID's lifetime. Default DefaultSVIDTTL.
	SVIDTTL time.Duration
}

// RenewCluster issues a cluster a new intermediate CA under the same root,
// for the same cluster and trust domain as r.Old, with a new key, and a
// gateway SVID from it. Peers need no change: their bundles hold the root,
// which stays. The returned Cluster has no Bundles; the caller fills them
// from the existing files.
func RenewCluster(r Renewal) (*Cluster, error) {
	if r.CATTL <= 0 {
		r.CATTL = DefaultCATTL
	}
	if r.SVIDTTL <= 0 {
		r.SVIDTTL = DefaultSVIDTTL
	}
	if err := r.Old.CheckSignatureFrom(r.Root.Cert); err != nil {
		return nil, fmt.Errorf("intermediate %q is not signed by root %q: %w", r.Old.Subject, r.Root.Cert.Subject, err)
	}
	td := ""
	for _, u := range r.Old.URIs {
		if u.Scheme == "spiffe" {
			td = u.Host
		}
	}
	if td == "" { // an intermediate made before they carried one
		u, err := ParseID(r.ID)
		if err != nil {
			return nil, err
		}
		td = u.Host
	}
	cluster := ""
	if l := r.Old.Subject.Locality; len(l) > 0 {
		cluster = l[0]
	}
	inter, err := r.Root.NewIntermediate(IntermediateOptions{Cluster: cluster, CommonName: r.Old.Subject.CommonName, TrustDomain: td, TTL: r.CATTL})
	if err != nil {
		return nil, err
	}
	svid, key, err := inter.IssueSVID(r.ID, r.SVIDTTL)
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: cluster, TrustDomain: td, ID: r.ID, Root: r.Root, Intermediate: inter, SVID: svid, SVIDKey: key}, nil
}
