//go:build e2e

// Package e2e is ewgw's two-cluster end-to-end suite (README.md): two
// clusters, each with a real kube-apiserver and etcd, the project's deploy/
// manifests applied with kubectl, gateways running as the manifests say,
// real TLS backends, and the scenarios of scenarios.yaml asserted on what
// the client observed. `make e2e` runs it on this machine (network
// namespaces, needs root); kind/run.sh runs it on two kind clusters.
package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"

	"github.com/ewgw/ewgw/internal/status"
	"github.com/ewgw/ewgw/internal/testbed"
)

// TestE2E sets up the environment named by EWGW_E2E_ENV ("local", the
// default, or "kind") and runs every scenario in order; each starts from
// the state the previous one left, so the first failure ends the run.
func TestE2E(t *testing.T) {
	begin := time.Now()
	f, err := loadScenarios()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dir := workDir(t)
	bins, err := buildBinaries(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var e env
	switch name := os.Getenv("EWGW_E2E_ENV"); name {
	case "", "local":
		e, err = newLocalEnv(ctx, t, dir, bins)
	case "kind":
		e, err = newKindEnv(ctx, t, dir)
	default:
		err = fmt.Errorf("EWGW_E2E_ENV=%q: want local or kind", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{e: e, file: f, logf: t.Logf}
	if err := setup(ctx, r, bins, dir); err != nil {
		t.Fatal(err)
	}
	setupTime := time.Since(begin)
	t.Logf("setup done in %v", setupTime.Round(time.Millisecond))
	for _, s := range f.Scenarios {
		ok := t.Run(s.Name, func(t *testing.T) {
			r.logf = t.Logf
			t.Log(s.Doc)
			for i, st := range s.Steps {
				t.Logf("step %d: %s", i+1, st)
				err := r.run(t.Context(), st)
				if errors.Is(err, errNoPath) {
					t.Skipf("step %d (%s): %v", i+1, st, err)
				}
				if err != nil {
					t.Fatalf("step %d (%s): %v", i+1, st, err)
				}
			}
			if err := r.settle(); err != nil {
				t.Fatal(err)
			}
		})
		if !ok {
			t.Fatalf("scenario %s failed; the later ones start from the state it leaves, so the run ends here", s.Name)
		}
	}
	r.logf = t.Logf
	t.Log(timingTable(r.timings))
	t.Logf("%d scenarios passed in %v (setup %v)", len(f.Scenarios), time.Since(begin).Round(time.Millisecond), setupTime.Round(time.Millisecond))
}

// workDir is the run's directory: logs, pods' files, certificates. It is
// kept when the test fails.
func workDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ewgw-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Pods running as another user (the gateway's 65532) execute the
	// binaries and traverse to their volumes.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs and files kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func timingTable(ts []timing) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "timings:")
	for _, t := range ts {
		fmt.Fprintf(tw, "  %s\t%v\t%s\n", t.What, t.Duration.Round(time.Millisecond), t.Detail)
	}
	tw.Flush()
	return b.String()
}

// binaries are the programs the suite runs on this machine.
type binaries struct {
	ewgw, workload string
}

// buildBinaries builds ewgw as `make build` does (or takes EWGW_BIN) and the
// workload program.
func buildBinaries(ctx context.Context, dir string) (binaries, error) {
	b := binaries{ewgw: os.Getenv("EWGW_BIN"), workload: filepath.Join(dir, "bin", "workload")}
	builds := [][]string{{goCmd(), "build", "-tags", "e2e", "-o", b.workload, "./test/e2e/cmd/workload"}}
	makeBuild := b.ewgw == ""
	if makeBuild {
		b.ewgw = filepath.Join(dir, "bin", "ewgw")
		builds = append(builds, []string{"make", "--no-print-directory", "build", "GO=" + goCmd(), "BIN=" + b.ewgw})
	}
	for _, args := range builds {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	if makeBuild {
		if err := checkVersion(ctx, b.ewgw); err != nil {
			return b, err
		}
	}
	return b, os.Chmod(filepath.Join(dir, "bin"), 0o755)
}

// checkVersion checks that a `make build` binary calls itself what the
// Makefile's VERSION says (`make version`; git describe by default).
func checkVersion(ctx context.Context, ewgw string) error {
	mk := exec.CommandContext(ctx, "make", "-s", "--no-print-directory", "version")
	mk.Dir = repoRoot()
	want, err := mk.Output()
	if err != nil {
		return fmt.Errorf("make version: %w", err)
	}
	if strings.TrimSpace(string(want)) == "" {
		return nil // not a git checkout: the binary has what the go command stamped
	}
	got, err := exec.CommandContext(ctx, ewgw, "version").Output()
	if err != nil {
		return fmt.Errorf("ewgw version: %w", err)
	}
	if g, w := strings.TrimSpace(string(got)), "ewgw "+strings.TrimSpace(string(want)); g != w {
		return fmt.Errorf("make build's ewgw version printed %q, want %q (make version)", g, w)
	}
	return nil
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// setupTimeout bounds the first wait for the gateways: on kind, their pods
// are scheduled and started in it.
const setupTimeout = 3 * time.Minute

// setup is what both environments share: gateway identities from `ewgw
// certs`, the ServiceExport CRD, the deploy/ manifests and the identity
// Secret, the applications of manifests/ with their certificates (from a
// CA the gateways never see), and then it waits for the gateways to peer.
func setup(ctx context.Context, r *runner, bins binaries, dir string) error {
	certs := filepath.Join(dir, "certs")
	names := []string{}
	for _, c := range r.e.clusters() {
		names = append(names, c.name)
	}
	if out, err := exec.CommandContext(ctx, bins.ewgw, "certs", "--out", certs, "--clusters", strings.Join(names, ",")).CombinedOutput(); err != nil {
		return fmt.Errorf("ewgw certs: %w: %s", err, out)
	}
	ca, err := testbed.NewCA("ewgw e2e backends")
	if err != nil {
		return err
	}
	if r.certs, err = backendSecrets(ctx, r, ca); err != nil {
		return err
	}
	for _, c := range r.e.clusters() {
		if err := installServiceExportCRD(ctx, c); err != nil {
			return err
		}
		if err := deployGateway(ctx, c); err != nil {
			return err
		}
		if _, err := c.kubectl(ctx, nil, "apply", "-f", filepath.Join(certs, c.name, "ewgw-identity.yaml")); err != nil {
			return err
		}
		if _, err := c.kubectl(ctx, nil, "apply", "-f", filepath.Join(suiteDir(), "manifests", c.name+".yaml")); err != nil {
			return err
		}
		if err := r.putSecrets(ctx, c); err != nil {
			return err
		}
	}
	if err := r.e.setCA(ctx, ca.PEM()); err != nil {
		return err
	}
	for _, c := range r.e.clusters() {
		if err := r.e.reconcile(ctx, c); err != nil {
			return err
		}
	}
	for _, c := range r.e.clusters() {
		for _, o := range r.e.clusters() {
			if o != c {
				if err := r.peerWithin(ctx, &peerStep{Cluster: c.name, Peer: o.name, Up: true}, setupTimeout); err != nil {
					return err
				}
				if err := r.waitImports(ctx, c, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// waitImports waits until c's gateway lists every service that o exports
// (by annotation) as imported from o, with a ready endpoint: the peers
// have exchanged catalogues.
func (r *runner) waitImports(ctx context.Context, c, o *cluster) error {
	svcs, err := o.cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var want []string
	for _, s := range svcs.Items {
		if s.Annotations["ewgw.io/export"] == "true" {
			want = append(want, s.Namespace+"/"+s.Name)
		}
	}
	var missing []string
	err = pollFor(ctx, setupTimeout, fmt.Sprintf("%s imports %v from %s", c.name, want, o.name), func() (bool, error) {
		rep, err := r.e.status(ctx, c, "")
		if err != nil {
			return false, err
		}
		missing = slices.DeleteFunc(slices.Clone(want), func(svc string) bool { return imported(rep, svc, o.name) })
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w; missing %v", err, missing)
	}
	return nil
}

// imported reports whether rep lists svc as served by cluster with a
// ready endpoint.
func imported(rep status.Report, svc, cluster string) bool {
	for _, s := range rep.Imported {
		if s.Service != svc {
			continue
		}
		for _, c := range s.Clusters {
			for _, p := range c.Ports {
				if c.Cluster == cluster && p.Ready > 0 {
					return true
				}
			}
		}
	}
	return false
}

// deployGateway applies c's deploy/ manifests and runs one gateway
// replica (the scenarios kill "the" gateway of a cluster).
func deployGateway(ctx context.Context, c *cluster) error {
	if _, err := c.kubectl(ctx, nil, "apply", "-k", c.deploy); err != nil {
		return err
	}
	api := c.cs.AppsV1().Deployments("ewgw")
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := api.GetScale(ctx, "ewgw", metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = 1
		_, err = api.UpdateScale(ctx, "ewgw", sc, metav1.UpdateOptions{})
		return err
	})
}

// installServiceExportCRD installs the MCS ServiceExport CRD that
// sigs.k8s.io/mcs-api ships, and waits until it is served.
func installServiceExportCRD(ctx context.Context, c *cluster) error {
	if _, err := c.kubectl(ctx, mcscrd.ServiceExportCRD, "apply", "-f", "-"); err != nil {
		return err
	}
	_, err := c.kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/serviceexports.multicluster.x-k8s.io")
	return err
}

// backendSecrets issues every backend's certificate and returns their
// fingerprints; the Secrets are written by putSecrets.
func backendSecrets(ctx context.Context, r *runner, ca *testbed.CA) (map[string]string, error) {
	fps := map[string]string{}
	r.secrets = map[string]*corev1.Secret{}
	for name, b := range r.file.Backends {
		ns, secret, _ := strings.Cut(b.Secret, "/")
		var dns []string
		for _, n := range b.Names {
			dns = append(dns, n+"."+ns+".svc.cluster.local", n+"."+ns+".svc.clusterset.local",
				n+"-global."+ns+".svc.cluster.local", n+"."+ns)
		}
		cert, err := ca.Server(dns...)
		if err != nil {
			return nil, err
		}
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return nil, err
		}
		fps[name] = fingerprint(cert.Leaf)
		r.secrets[name] = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: ns},
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
				corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
			},
		}
	}
	return fps, nil
}

// putSecrets writes the Secrets of c's backends.
func (r *runner) putSecrets(ctx context.Context, c *cluster) error {
	for name, s := range r.secrets {
		if r.file.Backends[name].Cluster != c.name {
			continue
		}
		_, err := c.cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			_, err = c.cs.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("%s: secret %s/%s: %w", c.name, s.Namespace, s.Name, err)
		}
	}
	return nil
}

// httpGetOK GETs url through dial and wants 200.
func httpGetOK(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url string) error {
	_, err := httpGet(ctx, dial, url)
	return err
}

// httpGet GETs url through dial and returns the body of a 200 answer.
func httpGet(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url string) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func mapKeys[K comparable, V any](m map[K]V) iter.Seq[K] { return maps.Keys(m) }
