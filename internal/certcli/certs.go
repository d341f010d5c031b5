// Package certcli is the "ewgw certs" command: it lays out a cluster set's
// SPIFFE identities with internal/certgen and writes them as files and
// Kubernetes Secret manifests, and renews a cluster's intermediate CA.
package certcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode"

	"github.com/ewgw/ewgw/internal/certgen"
)

// Run is "ewgw certs": it mints a root CA (or one per cluster with
// --federated), an Istio plug-in intermediate CA and a gateway SVID per
// cluster, and writes them as files and Kubernetes Secret manifests under
// --out. Existing files are left alone unless --force is given, and a
// symbolic link never is.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "rotate" {
		return runCertsRotate(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("out", "", "output directory (required)")
	clusters := fs.String("clusters", "", "comma-separated cluster names (required), e.g. cluster-a,cluster-b")
	td := fs.String("trust-domain", "", "one trust domain shared by all clusters (instead of --trust-domain-template)")
	tdTmpl := fs.String("trust-domain-template", certgen.ClusterPlaceholder+".ewgw.local", "per-cluster trust domain; "+certgen.ClusterPlaceholder+" is replaced by the cluster name")
	federated := fs.Bool("federated", false, "a separate root per cluster; gateways trust each other through federated bundles")
	ns := fs.String("namespace", "ewgw", "gateway namespace")
	sa := fs.String("service-account", "ewgw", "gateway service account")
	ttl := fs.Duration("ttl", certgen.DefaultSVIDTTL, "gateway SVID lifetime")
	caTTL := fs.Duration("ca-ttl", certgen.DefaultCATTL, "intermediate CA lifetime (each intermediate is name-constrained to its cluster's trust domain)")
	rootTTL := fs.Duration("root-ttl", certgen.DefaultRootTTL, "root CA lifetime")
	force := fs.Bool("force", false, "overwrite existing files, each replaced by a rename; a symbolic link is refused, never written through")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan := certgen.Plan{
		Clusters: strings.FieldsFunc(*clusters, isListSep), TrustDomain: *td, TrustDomainTemplate: *tdTmpl, Federated: *federated,
		Namespace: *ns, ServiceAccount: *sa, SVIDTTL: *ttl, CATTL: *caTTL, RootTTL: *rootTTL,
	}
	if err := checkCertsFlags(fs, *out, plan); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	setup, err := certgen.Generate(plan)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	files, err := certsFiles(setup, *ns)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	paths, err := certgen.WriteFiles(*out, files, *force)
	for _, p := range paths {
		fmt.Fprintln(stdout, "wrote", p)
	}
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	printCertsSummary(stdout, setup, *out, *ns)
	return nil
}

func checkCertsFlags(fs *flag.FlagSet, out string, plan certgen.Plan) error {
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if out == "" {
		errs = append(errs, errors.New("--out is required"))
	}
	if len(plan.Clusters) == 0 {
		errs = append(errs, errors.New("--clusters is required"))
	}
	tmplSet := false
	fs.Visit(func(f *flag.Flag) { tmplSet = tmplSet || f.Name == "trust-domain-template" })
	if plan.TrustDomain != "" && tmplSet {
		errs = append(errs, errors.New("--trust-domain and --trust-domain-template exclude each other"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--ttl", plan.SVIDTTL}, {"--ca-ttl", plan.CATTL}, {"--root-ttl", plan.RootTTL}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// isListSep separates the names of --clusters: commas and spaces.
func isListSep(r rune) bool { return r == ',' || unicode.IsSpace(r) }

// certsFiles lays the setup out: root material at the top, one directory per
// cluster.
func certsFiles(s *certgen.Setup, namespace string) ([]certgen.File, error) {
	files, err := s.RootFiles()
	if err != nil {
		return nil, err
	}
	for _, c := range s.Clusters {
		cf, err := c.Files(namespace)
		if err != nil {
			return nil, err
		}
		for _, f := range cf {
			f.Name = path.Join(c.Name, f.Name)
			files = append(files, f)
		}
	}
	return files, nil
}

func printCertsSummary(w io.Writer, s *certgen.Setup, out, namespace string) {
	for _, c := range s.Clusters {
		fmt.Fprintf(w, "\ncluster %s: trust domain %s, gateway id %s\n", c.Name, c.TrustDomain, c.ID)
		fmt.Fprintf(w, "  kubectl apply -f %s  # Istio plug-in CA (istio-system/%s)\n", path.Join(out, c.Name, certgen.SecretCACerts+".yaml"), certgen.SecretCACerts)
		fmt.Fprintf(w, "  kubectl apply -f %s  # gateway identity and bundles (%s/%s)\n", path.Join(out, c.Name, certgen.SecretIdentity+".yaml"), namespace, certgen.SecretIdentity)
		fmt.Fprintf(w, "  kubectl apply -f %s  # the cluster's CA, for peering.identity.ca (%s/%s; deploy/variants/ca-secret)\n", path.Join(out, c.Name, certgen.SecretCA+".yaml"), namespace, certgen.SecretCA)
		fmt.Fprintf(w, "  identity.ca: cert_chain %s, key %s; or identity.files: cert_chain %s, key %s; bundles:", certgen.FileCertChain, certgen.FileCAKey, certgen.FileSVID, certgen.FileSVIDKey)
		for _, td := range c.TrustDomains() {
			fmt.Fprintf(w, " %s=%s", td, certgen.BundleFile(c.TrustDomain, td))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  the intermediate expires %s: renew it before with ewgw certs rotate --out %s --cluster %s\n",
			c.Intermediate.Cert.NotAfter.UTC().Format("2006-01-02"), out, c.Name)
	}
	if len(s.Clusters) > 1 && s.Clusters[0].TrustDomain == s.Clusters[1].TrustDomain {
		fmt.Fprintln(w, "\nnote: with one shared trust domain every gateway has the same SPIFFE ID; authorize peers by trust domain.")
	}
}
