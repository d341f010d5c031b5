// Package kubetest starts a real kube-apiserver, backed by its own etcd,
// for tests and the end-to-end suite: token authentication, RBAC
// authorization and ServiceAccount tokens, as in a real cluster. The
// kube-apiserver binary is built once by scripts/kube-apiserver.sh and
// cached outside the repository (or named by EWGW_KUBE_APISERVER); etcd is
// Debian's etcd-server (or EWGW_ETCD).
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
)

// Options place a cluster. The zero value listens on 127.0.0.1 with free
// ports.
type Options struct {
	// Dir holds the cluster's files (etcd data, certificates, logs); a new
	// temporary directory when empty.
	Dir string
	// Host is the address the apiserver and etcd listen on; 127.0.0.1 when
	// empty.
	Host string
	// Log receives both processes' output; the files etcd.log and
	// kube-apiserver.log in Dir when nil.
	Log io.Writer
	// Exec wraps each command line, e.g. to run it in a network namespace
	// ("ip", "netns", "exec", "ns1"); nil runs it directly.
	Exec []string
}

// Cluster is a running apiserver and etcd.
type Cluster struct {
	// URL is the apiserver's https URL.
	URL string
	// CAFile verifies the apiserver's serving certificate.
	CAFile string
	// Dir holds the cluster's files.
	Dir string

	adminToken string
	procs      []*exec.Cmd
	stopOnce   sync.Once
}

// Start builds or finds the binaries and starts etcd and kube-apiserver,
// returning once the apiserver reports ready. Stop ends both.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	apiserver, err := APIServerBinary(ctx)
	if err != nil {
		return nil, err
	}
	etcd := os.Getenv("EWGW_ETCD")
	if etcd == "" {
		if etcd, err = exec.LookPath("etcd"); err != nil {
			return nil, errors.New("kubetest: etcd not found: install Debian's etcd-server (make deps) or set EWGW_ETCD")
		}
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "ewgw-kube-"); err != nil {
			return nil, err
		}
	}
	cl := &Cluster{Dir: opts.Dir, adminToken: randHex(16)}
	defer func() {
		if err != nil {
			cl.Stop()
		}
	}()
	c = cl
	ports, err := freePorts(opts.Host, 3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://" + net.JoinHostPort(opts.Host, strconv.Itoa(ports[0]))
	if err := c.start(ctx, opts, "etcd", etcd,
		"--name", "ewgw", "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://"+net.JoinHostPort(opts.Host, strconv.Itoa(ports[1])),
		"--initial-advertise-peer-urls", "http://"+net.JoinHostPort(opts.Host, strconv.Itoa(ports[1])),
		"--initial-cluster", "ewgw=http://"+net.JoinHostPort(opts.Host, strconv.Itoa(ports[1])),
		"--log-level", "warn"); err != nil {
		return nil, err
	}
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	certDir := filepath.Join(c.Dir, "pki")
	c.CAFile = filepath.Join(certDir, "apiserver.crt")
	c.URL = "https://" + net.JoinHostPort(opts.Host, strconv.Itoa(ports[2]))
	if err := c.start(ctx, opts, "kube-apiserver", apiserver,
		"--etcd-servers", etcdURL,
		"--bind-address", opts.Host, "--advertise-address", opts.Host,
		// No controller manager: nothing needs the kubernetes Service's
		// endpoints, and a loopback address may not be published there.
		"--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(ports[2]), "--cert-dir", certDir,
		"--token-auth-file", filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(c.Dir, "sa.pem"),
		"--service-account-signing-key-file", filepath.Join(c.Dir, "sa.pem"),
		"--api-audiences", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--profiling=false", "-v", "1"); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// APIServerBinary returns the kube-apiserver binary: EWGW_KUBE_APISERVER,
// else the one scripts/kube-apiserver.sh builds or finds in its cache.
func APIServerBinary(ctx context.Context) (string, error) {
	if p := os.Getenv("EWGW_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kube-apiserver.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: scripts/kube-apiserver.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot finds the directory holding this module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/ewgw/ewgw\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: not inside the ewgw repository; set EWGW_KUBE_APISERVER")
		}
		dir = parent
	}
}

// writeFiles writes the static token file (one system:masters admin) and
// the ServiceAccount signing key.
func (c *Cluster) writeFiles() error {
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n", c.adminToken)
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "sa.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func (c *Cluster) start(ctx context.Context, opts Options, name, bin string, args ...string) error {
	argv := append(append(append([]string{}, opts.Exec...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out := opts.Log
	if out == nil {
		f, err := os.Create(filepath.Join(c.Dir, name+".log"))
		if err != nil {
			return err
		}
		defer f.Close() // the child holds its own descriptor
		out = f
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return ctx.Err()
}

// waitReady polls /readyz until the apiserver answers ok. There is no event
// to wait on across a process boundary, so this polls, with a deadline.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = c.readyz(ctx)
		if last == nil {
			return nil
		}
		for _, p := range c.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("kubetest: %s exited: see %s", p.Path, c.Dir)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: apiserver not ready: %w (logs in %s)", last, c.Dir)
		case <-tick.C:
		}
	}
}

func (c *Cluster) readyz(ctx context.Context) error {
	if _, err := os.Stat(c.CAFile); err != nil {
		return err
	}
	rc := c.Admin()
	rc.Timeout = 2 * time.Second
	client, err := rest.HTTPClientFor(rc)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
	}
	return nil
}

// Stop kills both processes and removes nothing: Dir keeps the logs.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL) // the process group
			_ = p.Wait()                                      // reaps; the kill is the expected exit
		}
	})
}

// Admin returns a client config with cluster-admin rights.
func (c *Cluster) Admin() *rest.Config { return c.tokenConfig(c.adminToken) }

func (c *Cluster) tokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS:             100,
		Burst:           200,
	}
}

// ServiceAccountConfig creates the namespace and ServiceAccount if missing
// and returns a client config carrying a token issued for that account
// (TokenRequest), so requests are authorized by the RBAC bound to it.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	token, err := c.ServiceAccountToken(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return c.tokenConfig(token), nil
}

// ServiceAccountToken is ServiceAccountConfig's token, valid for a day.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	cs, err := kubeclient.New(c.Admin())
	if err != nil {
		return "", err
	}
	if err := EnsureNamespace(ctx, cs, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	day := int64(86400)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &day}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// Kubeconfig writes a kubeconfig for token (the admin's when empty) to
// path, for kubectl.
func (c *Cluster) Kubeconfig(path, token string) error {
	if token == "" {
		token = c.adminToken
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ewgw
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: ewgw
  context: {cluster: ewgw, user: user}
current-context: ewgw
`, c.URL, c.CAFile, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// EnsureNamespace creates namespace ns if it does not exist.
func EnsureNamespace(ctx context.Context, cs *kubeclient.Set, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// InstallServiceExportCRD installs the MCS ServiceExport CRD shipped with
// sigs.k8s.io/mcs-api and waits until the apiserver serves it.
func (c *Cluster) InstallServiceExportCRD(ctx context.Context) error {
	var obj map[string]any
	if err := yaml.Unmarshal(mcscrd.ServiceExportCRD, &obj); err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.Admin())
	if err != nil {
		return err
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	u := &unstructured.Unstructured{Object: obj}
	if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: install ServiceExport CRD: %w", err)
	}
	// The CRD is served once its Established condition is true. A watch may
	// end early (the apiserver closes watches at will), so each round reads
	// the CRD and watches from that version until it ends.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		cur, err := crds.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("kubetest: ServiceExport CRD: %w", err)
		}
		if established(cur) {
			return nil
		}
		w, err := crds.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + u.GetName(),
			ResourceVersion: cur.GetResourceVersion()})
		if err != nil {
			return fmt.Errorf("kubetest: watch ServiceExport CRD: %w", err)
		}
		done, err := watchEstablished(ctx, w)
		if done || err != nil {
			return err
		}
	}
}

// watchEstablished reads w until an event shows the CRD established
// (true), the watch ends (false) or ctx does (an error).
func watchEstablished(ctx context.Context, w watch.Interface) (bool, error) {
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			if u, ok := ev.Object.(*unstructured.Unstructured); ok && established(u) {
				return true, nil
			}
		case <-ctx.Done():
			return false, fmt.Errorf("kubetest: ServiceExport CRD not established: %w", ctx.Err())
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// freePorts reserves n free TCP ports on host. The listeners close before
// the processes bind, a window that is harmless on a test machine.
func freePorts(host string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Lazy is one cluster shared by a test package's tests, started by the
// first test that asks for it (so tests that need none run without one).
// Stop it from TestMain after m.Run.
type Lazy struct {
	// CRD installs the MCS ServiceExport CRD after the start.
	CRD bool

	once sync.Once
	c    *Cluster
	err  error
}

// Get returns the cluster, starting it on first use; a failed start fails
// every caller.
func (l *Lazy) Get(t testing.TB) *Cluster {
	t.Helper()
	l.once.Do(func() {
		// The first run may build the apiserver, about ten minutes.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if l.c, l.err = Start(ctx, Options{}); l.err == nil && l.CRD {
			l.err = l.c.InstallServiceExportCRD(ctx)
		}
	})
	if l.err != nil {
		t.Fatalf("start kube-apiserver: %v", l.err)
	}
	return l.c
}

// Stop stops the cluster if it was started.
func (l *Lazy) Stop() {
	if l.c != nil {
		l.c.Stop()
	}
}
