//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ewgw/ewgw/internal/discovery/kubetest"
	"github.com/ewgw/ewgw/internal/status"
)

// gatewayDeployment is the gateway's Deployment in deploy/.
const gatewayDeployment = "ewgw/ewgw"

// localEnv is the two clusters on this machine: network namespaces
// (netns_test.go), a kube-apiserver and etcd per cluster (kubetest), and
// the kubelet stand-in running the pods the manifests ask for. The client
// is the workload program, run in cluster-a's namespace with `ip netns
// exec`, as the kind script runs it in a pod with `kubectl exec`.
type localEnv struct {
	dir      string
	bins     binaries
	cs       []*cluster
	kubelets map[string]*kubelet
	ca       string
	// udpBlocked: the internet namespace drops UDP (blockUDP).
	udpBlocked bool
}

// newLocalEnv builds the network and starts both apiservers.
func newLocalEnv(ctx context.Context, t *testing.T, dir string, bins binaries) (*localEnv, error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	for _, tool := range []string{"ip", "nginx", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: run `make e2e`, which installs what the suite needs", tool)
		}
	}
	if err := lockRun(t); err != nil {
		return nil, err
	}
	if err := setupNetwork(); err != nil {
		return nil, err
	}
	t.Cleanup(removeNetwork)
	e := &localEnv{dir: dir, bins: bins, kubelets: map[string]*kubelet{}}
	names := slices.Sorted(mapKeys(sites))
	kubes := make([]*kubetest.Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { kubes[i], errs[i] = startAPIServer(ctx, dir, name) })
	}
	wg.Wait()
	for i, name := range names {
		if kubes[i] != nil {
			t.Cleanup(kubes[i].Stop)
		}
		if errs[i] != nil {
			return nil, fmt.Errorf("%s: %w", name, errs[i])
		}
		c, err := e.addCluster(name, kubes[i])
		if err != nil {
			return nil, err
		}
		t.Cleanup(e.kubelets[c.name].close)
	}
	for _, name := range names {
		for _, other := range names {
			if other == name {
				continue
			}
			port := strings.TrimPrefix(kubes[slices.Index(names, other)].URL, "https://"+sites[other].nodeIP()+":")
			if err := checkIsolation(ctx, name, sites[other], port); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// lockRun holds a machine-wide lock for the run: the namespaces' names are
// fixed, so two runs at once would tear down each other's.
func lockRun(t *testing.T) error {
	lock := filepath.Join(os.TempDir(), "ewgw-e2e.lock")
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("another e2e run holds %s; waiting", lock)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return err
		}
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	return nil
}

// startAPIServer starts a cluster's etcd and kube-apiserver in its
// namespace, on its node address. kubetest picks free ports by binding
// them in the caller's namespace, so Start runs on a thread switched into
// the cluster's namespace; the processes start there too (Exec says so
// again, for clarity).
func startAPIServer(ctx context.Context, dir, name string) (kc *kubetest.Cluster, err error) {
	s := sites[name]
	kdir := filepath.Join(dir, name, "kube")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return nil, err
	}
	err = inNetns(s.ns, func() error {
		var serr error
		kc, serr = kubetest.Start(ctx, kubetest.Options{Dir: kdir, Host: s.nodeIP(), Exec: []string{"ip", "netns", "exec", s.ns}})
		return serr
	})
	return kc, err
}

func (e *localEnv) addCluster(name string, kc *kubetest.Cluster) (*cluster, error) {
	kubeconfig := filepath.Join(e.dir, name, "admin.kubeconfig")
	if err := kc.Kubeconfig(kubeconfig, ""); err != nil {
		return nil, err
	}
	cs, err := newClients(kc.Admin())
	if err != nil {
		return nil, err
	}
	c := &cluster{name: name, kubeconfig: kubeconfig, rest: kc.Admin(), cs: cs,
		deploy: filepath.Join(repoRoot(), "deploy", "examples", name)}
	caPEM, err := os.ReadFile(kc.CAFile)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(kc.URL)
	if err != nil {
		return nil, err
	}
	e.kubelets[name] = &kubelet{
		c: c, site: sites[name], dir: filepath.Join(e.dir, name),
		images: map[string]image{
			// The images' CMDs: the Dockerfile's and nginx's.
			"ewgw":              {path: e.bins.ewgw, args: []string{"run", "--config", "/etc/ewgw/ewgw.yaml"}},
			"ewgw-e2e-workload": {path: e.bins.workload},
			"nginx":             {path: "/usr/sbin/nginx", args: []string{"-g", "daemon off;"}},
		},
		apiHost: u.Hostname(), apiPort: u.Port(), caPEM: caPEM,
		pods: map[string]*pod{}, addrs: map[string]netip.Addr{},
	}
	e.cs = append(e.cs, c)
	return c, nil
}

func (e *localEnv) clusters() []*cluster { return e.cs }

// call runs `workload call` in cluster-a's network namespace.
func (e *localEnv) call(ctx context.Context, args []string) (callReport, error) {
	full := append([]string{"netns", "exec", sites["cluster-a"].ns, e.bins.workload, "call"}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return callReport{}, fmt.Errorf("workload call %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return decodeReport(stdout.Bytes())
}

// admin GETs path from the admin port of c's gateway pod, from inside c.
func (e *localEnv) admin(ctx context.Context, c *cluster, path string) ([]byte, error) {
	k := e.kubelets[c.name]
	p := k.podOf(gatewayDeployment)
	if p == nil {
		return nil, fmt.Errorf("%s: no gateway pod", c.name)
	}
	port, err := containerPort(p.obj.Spec.Containers[0], intstr.FromString("admin"))
	if err != nil {
		return nil, err
	}
	return httpGet(ctx, dialer(k.site.ns), "http://"+net.JoinHostPort(p.ip.String(), strconv.Itoa(int(port)))+path)
}

func (e *localEnv) metrics(ctx context.Context, c *cluster) (string, error) {
	b, err := e.admin(ctx, c, "/metrics")
	return string(b), err
}

// publicHost is the cluster's wan0 address: its load balancer's.
func (e *localEnv) publicHost(c *cluster) string {
	return strings.SplitN(sites[c.name].wan, "/", 2)[0]
}

// outside runs the workload program in the internet namespace, which
// routes to every cluster's public address and holds no identity.
func (e *localEnv) outside(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", internetNS, e.bins.workload}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("workload %s (internet): %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// blockUDP drops UDP in the internet namespace, which routes between the
// clusters: a network that carries TCP only.
func (e *localEnv) blockUDP(ctx context.Context, on bool) error {
	op := "-D"
	if on {
		op = "-I"
	}
	if on == e.udpBlocked {
		return nil
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", internetNS,
		"iptables-legacy", op, "FORWARD", "-p", "udp", "-j", "DROP").CombinedOutput()
	if err != nil {
		return fmt.Errorf("block UDP=%v: %w: %s", on, err, out)
	}
	e.udpBlocked = on
	return nil
}

// gatewayAddr is the gateway pod's address in cluster-a.
func (e *localEnv) gatewayAddr() string {
	a, ok := e.kubelets["cluster-a"].addrOf(gatewayDeployment)
	if !ok {
		return "no-gateway-pod:0"
	}
	return net.JoinHostPort(a.String(), "15443")
}

func (e *localEnv) setCA(_ context.Context, pem []byte) error {
	e.ca = filepath.Join(e.dir, "client", "ca.pem")
	if err := os.MkdirAll(filepath.Dir(e.ca), 0o755); err != nil {
		return err
	}
	return os.WriteFile(e.ca, pem, 0o644)
}

func (e *localEnv) caFile() string { return e.ca }

func (e *localEnv) reconcile(ctx context.Context, c *cluster) error {
	return e.kubelets[c.name].sync(ctx)
}

func (e *localEnv) kill(ctx context.Context, c *cluster) error {
	return e.kubelets[c.name].signal(ctx, gatewayDeployment, sigkill)
}

func (e *localEnv) stop(ctx context.Context, c *cluster) error {
	return e.kubelets[c.name].signal(ctx, gatewayDeployment, sigterm)
}

func (e *localEnv) start(ctx context.Context, c *cluster) error {
	k := e.kubelets[c.name]
	if err := k.restart(ctx, gatewayDeployment); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.publish(ctx)
}

// status reads the gateway's /status on its admin port, from its node.
func (e *localEnv) status(ctx context.Context, c *cluster, sni string) (status.Report, error) {
	path := "/status"
	if sni != "" {
		path += "?name=" + url.QueryEscape(sni)
	}
	body, err := e.admin(ctx, c, path)
	if err != nil {
		return status.Report{}, err
	}
	u := path
	var r status.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return status.Report{}, fmt.Errorf("%s: %w", u, err)
	}
	return r, nil
}
