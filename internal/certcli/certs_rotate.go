package certcli

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
)

// runCertsRotate is "ewgw certs rotate": it renews one cluster's
// intermediate CA under the same root, in the directory ewgw certs wrote
// (the root's key is at its top), and issues the gateway a new SVID from
// it. Every file of the cluster's directory is rewritten (each replaced by
// a rename), the bundles unchanged: peers trust the root, which stays, so
// only this cluster's Secrets change.
func runCertsRotate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("certs rotate", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("out", "", "the directory ewgw certs wrote (required)")
	cluster := fs.String("cluster", "", "the cluster whose intermediate CA to renew (required)")
	ns := fs.String("namespace", "ewgw", "gateway namespace, for the Secret manifests")
	caTTL := fs.Duration("ca-ttl", certgen.DefaultCATTL, "the new intermediate CA's lifetime")
	ttl := fs.Duration("ttl", certgen.DefaultSVIDTTL, "the new gateway SVID's lifetime (files identity source)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *out == "" || *cluster == "" {
		errs = append(errs, errors.New("--out and --cluster are required"))
	}
	if *caTTL <= 0 || *ttl <= 0 {
		errs = append(errs, errors.New("--ca-ttl and --ttl must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("certs rotate: %w", err)
	}
	c, err := renewCluster(*out, *cluster, *caTTL, *ttl)
	if err != nil {
		return fmt.Errorf("certs rotate: %w", err)
	}
	files, err := c.Files(*ns)
	if err != nil {
		return fmt.Errorf("certs rotate: %w", err)
	}
	for i := range files {
		files[i].Name = path.Join(*cluster, files[i].Name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("certs rotate: %w", err)
	}
	paths, err := certgen.WriteFiles(*out, files, true)
	for _, p := range paths {
		fmt.Fprintln(stdout, "wrote", p)
	}
	if err != nil {
		return fmt.Errorf("certs rotate: %w", err)
	}
	dir := filepath.Join(*out, *cluster)
	fmt.Fprintf(stdout, "\ncluster %s: new intermediate CA, valid until %s, under the same root\n", *cluster, c.Intermediate.Cert.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "  kubectl apply -f %s  # gateways with peering.identity.ca issue from it within seconds\n", filepath.Join(dir, certgen.SecretCA+".yaml"))
	fmt.Fprintf(stdout, "  kubectl apply -f %s  # gateways with peering.identity.files: a new SVID\n", filepath.Join(dir, certgen.SecretIdentity+".yaml"))
	fmt.Fprintf(stdout, "  kubectl apply -f %s  # with Istio, then restart istiod\n", filepath.Join(dir, certgen.SecretCACerts+".yaml"))
	return nil
}

// renewCluster reads cluster's material under out and issues the renewal:
// the root from out/<cluster>-root-*.pem (federated) or out/root-*.pem
// (shared), the old intermediate, the gateway's ID from its SVID, and the
// bundles as they are.
func renewCluster(out, cluster string, caTTL, ttl time.Duration) (*certgen.Cluster, error) {
	dir := filepath.Join(out, cluster)
	root, err := readRoot(out, cluster)
	if err != nil {
		return nil, err
	}
	old, err := readCerts(filepath.Join(dir, certgen.FileCACert))
	if err != nil {
		return nil, err
	}
	svid, err := readCerts(filepath.Join(dir, certgen.FileSVID))
	if err != nil {
		return nil, err
	}
	if len(svid[0].URIs) != 1 {
		return nil, fmt.Errorf("%s: the leaf has no single URI SAN", filepath.Join(dir, certgen.FileSVID))
	}
	c, err := certgen.RenewCluster(certgen.Renewal{Root: root, Old: old[0], ID: svid[0].URIs[0].String(), CATTL: caTTL, SVIDTTL: ttl})
	if err != nil {
		return nil, err
	}
	c.Name = cluster
	if c.Bundles, err = readBundles(dir, c.TrustDomain); err != nil {
		return nil, err
	}
	return c, nil
}

// readRoot reads the root certificate and key ewgw certs wrote for cluster.
func readRoot(out, cluster string) (*certgen.CA, error) {
	prefix := cluster + "-"
	if _, err := os.Stat(filepath.Join(out, prefix+certgen.FileRootKey)); err != nil {
		prefix = ""
	}
	cert, err := os.ReadFile(filepath.Join(out, prefix+certgen.FileRootCert))
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	key, err := os.ReadFile(filepath.Join(out, prefix+certgen.FileRootKey))
	if err != nil {
		return nil, fmt.Errorf("root key (ewgw certs writes it at the top of --out): %w", err)
	}
	root, err := certgen.ParseCA(cert, key, nil)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", filepath.Join(out, prefix+certgen.FileRootCert), err)
	}
	return root, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := certgen.ParseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// readBundles reads dir's bundle files: bundle.pem for own, and
// bundle-<td>.pem for each other trust domain.
func readBundles(dir, own string) (map[string][]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "bundle*.pem"))
	if err != nil {
		return nil, err
	}
	bundles := map[string][]byte{}
	for _, p := range names {
		td := own
		if base := filepath.Base(p); base != certgen.FileBundle {
			td = strings.TrimSuffix(strings.TrimPrefix(base, "bundle-"), ".pem")
		}
		if bundles[td], err = os.ReadFile(p); err != nil {
			return nil, err
		}
	}
	if _, ok := bundles[own]; !ok {
		return nil, fmt.Errorf("%s: no %s", dir, certgen.FileBundle)
	}
	return bundles, nil
}
