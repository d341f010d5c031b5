//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ewgw/ewgw/internal/status"
)

// kindEnv is the two clusters as kind clusters that kind/run.sh created
// and loaded the images into (EWGW_E2E_KIND_CLUSTERS names them, cluster-a
// first). Their controllers and kubelets are real, so reconcile only waits
// for them. The gateways reach each other at the other node's address on
// the shared Docker network, NodePort 30443 (UDP); the client is a pod in
// cluster-a (kind/client.yaml), run with `kubectl exec`.
//
// A SIGKILLed container is restarted by the kubelet at once, so kill
// freezes the gateway with SIGSTOP (to its peers it is as silent as a dead
// one) and start SIGKILLs it, letting the kubelet restart it.
type kindEnv struct {
	dir string
	cs  []*cluster
	// nodes are the kind node containers, by cluster.
	nodes map[string]string
	// before are the gateway pods and their restart counts when the
	// gateway was last stopped; start waits for a new incarnation.
	before map[string]map[string]int32
	frozen map[string]bool
}

// kindNodePort is the peering LoadBalancer's node port (UDP).
const kindNodePort = "30443"

func newKindEnv(ctx context.Context, t *testing.T, dir string) (env, error) {
	names := strings.Split(os.Getenv("EWGW_E2E_KIND_CLUSTERS"), ",")
	if len(names) != 2 || names[0] == "" || names[1] == "" {
		return nil, fmt.Errorf("EWGW_E2E_KIND_CLUSTERS=%q: want two kind cluster names (test/e2e/kind/run.sh sets it)", os.Getenv("EWGW_E2E_KIND_CLUSTERS"))
	}
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		kubeconfig = filepath.Join(home, ".kube", "config")
	}
	e := &kindEnv{dir: dir, nodes: map[string]string{}, before: map[string]map[string]int32{}, frozen: map[string]bool{}}
	ips := map[string]string{}
	for i, kc := range names {
		name := []string{"cluster-a", "cluster-b"}[i]
		e.nodes[name] = kc + "-control-plane"
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", e.nodes[name]).Output()
		if err != nil {
			return nil, fmt.Errorf("docker inspect %s: %w", e.nodes[name], err)
		}
		ips[name] = strings.Fields(string(out))[0]
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: "kind-" + kc}).ClientConfig()
		if err != nil {
			return nil, err
		}
		cs, err := newClients(rc)
		if err != nil {
			return nil, err
		}
		e.cs = append(e.cs, &cluster{name: name, kubeconfig: kubeconfig, context: "kind-" + kc, rest: rc, cs: cs})
	}
	for _, c := range e.cs {
		peer := "cluster-b"
		if c.name == "cluster-b" {
			peer = "cluster-a"
		}
		var err error
		if c.deploy, err = kindOverlay(filepath.Join(dir, c.name, "deploy"), c.name, ips[peer]+":"+kindNodePort); err != nil {
			return nil, err
		}
	}
	t.Logf("kind: cluster-a %s (%s), cluster-b %s (%s)", e.nodes["cluster-a"], ips["cluster-a"], e.nodes["cluster-b"], ips["cluster-b"])
	return e, nil
}

// peerAddr matches the peer address in deploy/examples' configs.
var peerAddr = regexp.MustCompile(`addrs: \["[0-9.]+:15443"\]`)

// kindOverlay writes a kustomization over deploy/examples/<cluster> that
// changes only what kind needs: the peer's address (the other node, port
// 30443) and the peering LoadBalancer's node port.
func kindOverlay(dir, cluster, peer string) (string, error) {
	base := filepath.Join(repoRoot(), "deploy", "examples", cluster)
	cfg, err := os.ReadFile(filepath.Join(base, "ewgw.yaml"))
	if err != nil {
		return "", err
	}
	if len(peerAddr.FindAll(cfg, -1)) != 1 {
		return "", fmt.Errorf("%s/ewgw.yaml: want one peer address to replace", base)
	}
	cfg = peerAddr.ReplaceAll(cfg, []byte(`addrs: ["`+peer+`"]`))
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return "", err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
configMapGenerator:
- name: ewgw-config
  namespace: ewgw
  behavior: replace
  files:
  - ewgw.yaml
patches:
- target: {kind: Service, name: ewgw-peering}
  patch: |-
    - {op: add, path: /spec/ports/0/nodePort, value: %[2]s}
    - {op: add, path: /spec/ports/1/nodePort, value: %[2]s}
`, rel, kindNodePort)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "ewgw.yaml"), cfg, 0o644); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

func (e *kindEnv) clusters() []*cluster { return e.cs }

func (e *kindEnv) gatewayAddr() string { return "ewgw.ewgw.svc.cluster.local:15443" }

func (e *kindEnv) caFile() string { return "/ca/ca.pem" }

// setCA publishes the CA as the ConfigMap the client pod mounts, and
// starts the client.
func (e *kindEnv) setCA(ctx context.Context, pem []byte) error {
	c := e.cs[0]
	if _, err := c.kubectl(ctx, nil, "apply", "-f", filepath.Join(suiteDir(), "kind", "client.yaml")); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "client-ca", Namespace: "e2e"}, Data: map[string]string{"ca.pem": string(pem)}}
	_, err := c.cs.CoreV1().ConfigMaps("e2e").Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.cs.CoreV1().ConfigMaps("e2e").Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	_, err = c.kubectl(ctx, nil, "-n", "e2e", "rollout", "status", "deployment/client", "--timeout=180s")
	return err
}

func (e *kindEnv) call(ctx context.Context, args []string) (callReport, error) {
	out, err := e.cs[0].kubectl(ctx, nil, append([]string{"-n", "e2e", "exec", "deployment/client", "--", "/workload", "call"}, args...)...)
	if err != nil {
		return callReport{}, err
	}
	return decodeReport(out)
}

// reconcile waits until every Deployment but the gateway's (which kill,
// stop and start handle) has as many ready replicas as it wants, and no
// more pods.
func (e *kindEnv) reconcile(ctx context.Context, c *cluster) error {
	return pollFor(ctx, 3*time.Minute, c.name+": deployments ready", func() (bool, error) {
		deps, err := c.cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, d := range deps.Items {
			if d.Namespace == "ewgw" {
				continue
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			st := d.Status
			if st.ObservedGeneration < d.Generation || st.ReadyReplicas != want || st.Replicas != want || st.UpdatedReplicas != want {
				return false, nil
			}
		}
		return true, nil
	})
}

// gatewayPods are c's gateway pods.
func gatewayPods(ctx context.Context, c *cluster) ([]corev1.Pod, error) {
	pods, err := c.cs.CoreV1().Pods("ewgw").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=ewgw"})
	if err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// remember records the gateway pods' restart counts.
func (e *kindEnv) remember(ctx context.Context, c *cluster) error {
	pods, err := gatewayPods(ctx, c)
	if err != nil {
		return err
	}
	m := map[string]int32{}
	for _, p := range pods {
		m[p.Name] = restarts(p)
	}
	e.before[c.name] = m
	return nil
}

func restarts(p corev1.Pod) int32 {
	if len(p.Status.ContainerStatuses) == 0 {
		return 0
	}
	return p.Status.ContainerStatuses[0].RestartCount
}

// signalGateway signals the gateway process on c's node (via the container
// runtime, as the kubelet sees it).
func (e *kindEnv) signalGateway(ctx context.Context, c *cluster, sig string) error {
	script := `pid=$(crictl inspect --output go-template --template '{{.info.pid}}' "$(crictl ps -q --name '^ewgw$' | head -n1)") && kill -` + sig + ` "$pid"`
	if out, err := exec.CommandContext(ctx, "docker", "exec", e.nodes[c.name], "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: signal %s the gateway: %w: %s", c.name, sig, err, out)
	}
	return nil
}

func (e *kindEnv) kill(ctx context.Context, c *cluster) error {
	if err := e.remember(ctx, c); err != nil {
		return err
	}
	if err := e.signalGateway(ctx, c, "STOP"); err != nil {
		return err
	}
	e.frozen[c.name] = true
	return nil
}

// stop deletes the gateway pods (SIGTERM, drain); the Deployment makes new
// ones, which start waits for.
func (e *kindEnv) stop(ctx context.Context, c *cluster) error {
	if err := e.remember(ctx, c); err != nil {
		return err
	}
	_, err := c.kubectl(ctx, nil, "-n", "ewgw", "delete", "pod", "-l", "app.kubernetes.io/name=ewgw", "--wait=false")
	return err
}

func (e *kindEnv) start(ctx context.Context, c *cluster) error {
	switch {
	case e.frozen[c.name]:
		delete(e.frozen, c.name)
		if err := e.signalGateway(ctx, c, "KILL"); err != nil {
			return err
		}
	case e.before[c.name] == nil:
		// Not stopped by the suite: a crash-looping gateway; start a fresh
		// pod rather than wait out the back-off.
		if err := e.stop(ctx, c); err != nil {
			return err
		}
	}
	before := e.before[c.name]
	delete(e.before, c.name)
	var result error
	err := pollFor(ctx, 3*time.Minute, c.name+": gateway restarted", func() (bool, error) {
		pods, err := gatewayPods(ctx, c)
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if n, ok := before[p.Name]; ok && restarts(p) <= n {
				continue // the old incarnation
			}
			if ready(p) {
				return true, nil
			}
			if code, previous, ok := failed(p); ok {
				logs, _ := c.cs.CoreV1().Pods("ewgw").GetLogs(p.Name, &corev1.PodLogOptions{Previous: previous}).DoRaw(ctx)
				result = &exitError{Code: int(code), Output: string(logs)}
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return result
}

func ready(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// failed reports a container that exited with an error, now or in its
// previous run.
func failed(p corev1.Pod) (code int32, previous, ok bool) {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return t.ExitCode, false, true
		}
		if t := cs.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 {
			return t.ExitCode, true, true
		}
	}
	return 0, false, false
}

// status reads a ready gateway pod's /status through the apiserver's pod
// proxy.
func (e *kindEnv) status(ctx context.Context, c *cluster, sni string) (status.Report, error) {
	pods, err := gatewayPods(ctx, c)
	if err != nil {
		return status.Report{}, err
	}
	for _, p := range pods {
		if !ready(p) {
			continue
		}
		params := map[string]string{}
		if sni != "" {
			params["name"] = sni
		}
		body, err := c.cs.CoreV1().Pods("ewgw").ProxyGet("http", p.Name, "15000", "status", params).DoRaw(ctx)
		if err != nil {
			return status.Report{}, err
		}
		var r status.Report
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
			return status.Report{}, err
		}
		return r, nil
	}
	return status.Report{}, fmt.Errorf("%s: no ready gateway pod", c.name)
}

// metrics reads a ready gateway pod's /metrics through the apiserver's pod
// proxy.
func (e *kindEnv) metrics(ctx context.Context, c *cluster) (string, error) {
	pods, err := gatewayPods(ctx, c)
	if err != nil {
		return "", err
	}
	for _, p := range pods {
		if ready(p) {
			body, err := c.cs.CoreV1().Pods("ewgw").ProxyGet("http", p.Name, "15000", "metrics", nil).DoRaw(ctx)
			return string(body), err
		}
	}
	return "", fmt.Errorf("%s: no ready gateway pod", c.name)
}

// publicHost: kind has no load balancer of its own.
func (e *kindEnv) publicHost(*cluster) string { return "" }

// outside: kind's clusters share the host's Docker network, so no client
// stands outside them as the internet does; the attack steps are skipped.
func (e *kindEnv) outside(context.Context, ...string) ([]byte, error) { return nil, errNoInternet }

// blockUDP cannot cut the path between kind's clusters, which share one
// Docker network with no router between them to filter.
func (e *kindEnv) blockUDP(context.Context, bool) error { return errNoPath }
