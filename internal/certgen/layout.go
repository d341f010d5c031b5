package certgen

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// File names in a cluster's directory. The first four are Istio's plug-in CA
// layout (istio.io/latest/docs/tasks/security/cert-management/plugin-ca-cert/),
// the rest the gateway's own identity.
const (
	FileCACert    = "ca-cert.pem"    // the cluster's intermediate CA
	FileCAKey     = "ca-key.pem"     // its key
	FileRootCert  = "root-cert.pem"  // the root the intermediate chains to
	FileCertChain = "cert-chain.pem" // intermediate followed by root
	FileSVID      = "svid.pem"       // gateway leaf followed by intermediate
	FileSVIDKey   = "svid-key.pem"   // gateway key, PKCS#8
	FileBundle    = "bundle.pem"     // roots of the gateway's own trust domain
	FileRootKey   = "root-key.pem"   // a root's key, kept out of the clusters
)

// Secret names and the namespace of Istio's plug-in CA secret.
//
// The CA key goes to the gateway in a Secret of its own, SecretCA, never in
// SecretIdentity: the bundles in SecretIdentity are public and change with
// every root rotation and federation, and whoever may read or update them
// need not hold the key that mints the cluster's identities. Only a gateway
// using the ca identity source mounts SecretCA, and RBAC can grant it alone.
const (
	SecretCACerts  = "cacerts"       // istio-system: Istio's plug-in CA
	SecretCA       = "ewgw-ca"       // the gateway's namespace: the same CA files, for peering.identity.ca
	SecretIdentity = "ewgw-identity" // the gateway's namespace: SVID, its key and the bundles
	IstioNamespace = "istio-system"
)

// File is one file to write: Name is relative to the output directory.
type File struct {
	Name string
	Data []byte
	// Private files (keys) are written with mode 0600, others 0644.
	Private bool
}

// BundleFile names the bundle file for trust domain td in the directory of a
// gateway whose own trust domain is own: bundle.pem for its own,
// bundle-<td>.pem for the others (a trust domain is a valid file name and
// Secret key).
func BundleFile(own, td string) string {
	if td == own {
		return FileBundle
	}
	return "bundle-" + td + ".pem"
}

// CAFiles returns the cluster's Istio plug-in CA files.
func (c *Cluster) CAFiles() ([]File, error) {
	key, err := c.Intermediate.KeyPEM()
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: FileCACert, Data: c.Intermediate.CertPEM()},
		{Name: FileCAKey, Data: key, Private: true},
		{Name: FileRootCert, Data: c.Root.RootPEM()},
		{Name: FileCertChain, Data: c.Intermediate.ChainPEM()},
	}, nil
}

// IdentityFiles returns the gateway's SVID, key and one bundle file per
// trusted trust domain, sorted by name.
func (c *Cluster) IdentityFiles() []File {
	files := []File{
		{Name: FileSVID, Data: c.SVID},
		{Name: FileSVIDKey, Data: c.SVIDKey, Private: true},
	}
	for _, td := range c.TrustDomains() {
		files = append(files, File{Name: BundleFile(c.TrustDomain, td), Data: c.Bundles[td]})
	}
	return files
}

// TrustDomains returns the trust domains the gateway holds bundles for, its
// own first, then the others sorted.
func (c *Cluster) TrustDomains() []string {
	tds := []string{c.TrustDomain}
	for td := range c.Bundles {
		if td != c.TrustDomain {
			tds = append(tds, td)
		}
	}
	slices.Sort(tds[1:])
	return tds
}

// Files returns everything for the cluster's directory: the plug-in CA
// files, the gateway identity files, and Kubernetes Secret manifests of
// them: cacerts.yaml (istio-system), ewgw-ca.yaml and ewgw-identity.yaml
// (namespace).
func (c *Cluster) Files(namespace string) ([]File, error) {
	ca, err := c.CAFiles()
	if err != nil {
		return nil, err
	}
	id := c.IdentityFiles()
	return slices.Concat(ca, id, []File{
		{Name: SecretCACerts + ".yaml", Data: SecretYAML(SecretCACerts, IstioNamespace, ca), Private: true},
		{Name: SecretCA + ".yaml", Data: SecretYAML(SecretCA, namespace, ca), Private: true},
		{Name: SecretIdentity + ".yaml", Data: SecretYAML(SecretIdentity, namespace, id), Private: true},
	}), nil
}

// RootFiles returns the root certificates and keys, to keep apart from the
// clusters: root-cert.pem and root-key.pem for a shared root, and
// <cluster>-root-cert.pem and <cluster>-root-key.pem per federated cluster.
func (s *Setup) RootFiles() ([]File, error) {
	var files []File
	add := func(prefix string, ca *CA) error {
		key, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		files = append(files, File{Name: prefix + FileRootCert, Data: ca.CertPEM()},
			File{Name: prefix + FileRootKey, Data: key, Private: true})
		return nil
	}
	if s.Shared != nil {
		return files, add("", s.Shared)
	}
	for _, c := range s.Clusters {
		if err := add(c.Name+"-", c.Root); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// SecretYAML renders an Opaque Kubernetes Secret holding files under their
// names as keys.
func SecretYAML(name, namespace string, files []File) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n", name, namespace)
	fmt.Fprintf(&b, "  labels:\n    app.kubernetes.io/managed-by: ewgw-certs\ntype: Opaque\ndata:\n")
	for _, f := range files {
		fmt.Fprintf(&b, "  %s: %s\n", f.Name, base64.StdEncoding.EncodeToString(f.Data))
	}
	return []byte(b.String())
}
