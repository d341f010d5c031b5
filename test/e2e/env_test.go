//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	"k8s.io/client-go/rest"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/status"
)

// env is where the scenarios run: two clusters with their gateways, and a
// client in cluster-a. localEnv (network namespaces on this machine) and
// kindEnv (two kind clusters) implement it; everything else, from the
// manifests applied to the assertions, is shared.
type env interface {
	// clusters returns cluster-a and cluster-b.
	clusters() []*cluster
	// call runs the client in cluster-a: `workload call args...`.
	call(ctx context.Context, args []string) (callReport, error)
	// gatewayAddr is the address the client dials to reach its gateway.
	gatewayAddr() string
	// setCA gives the client the backends' CA; caFile is where the client
	// finds it (a path in its own file system).
	setCA(ctx context.Context, pem []byte) error
	caFile() string
	// reconcile does what c's controllers and kubelet would after a write
	// to its API: start and stop pods, publish EndpointSlices. It returns
	// once they are done (locally), or at once (kind, which has them).
	reconcile(ctx context.Context, c *cluster) error
	// kill stops c's gateway without a goodbye; stop lets it drain.
	kill(ctx context.Context, c *cluster) error
	stop(ctx context.Context, c *cluster) error
	// start (re)starts c's gateway and returns once it is ready, or an
	// *exitError once it exited instead.
	start(ctx context.Context, c *cluster) error
	// status is the report of c's gateway, with the decision for sni.
	status(ctx context.Context, c *cluster, sni string) (status.Report, error)
	// metrics is the text of c's gateway's /metrics.
	metrics(ctx context.Context, c *cluster) (string, error)
	// publicHost is c's public address: where its LoadBalancer Services
	// answer the internet.
	publicHost(c *cluster) string
	// blockUDP drops every UDP datagram between the clusters (and from
	// the internet to them), or lets them through again.
	blockUDP(ctx context.Context, on bool) error
	// outside runs `workload args...` from outside every cluster (the
	// internet) and returns its output, or errNoInternet.
	outside(ctx context.Context, args ...string) ([]byte, error)
}

// exitError is a gateway that exited instead of becoming ready.
type exitError struct {
	Code   int
	Output string // its log, or the end of it
}

func (e *exitError) Error() string {
	return fmt.Sprintf("gateway exited with status %d: %s", e.Code, e.Output)
}

// cluster is one cluster's API, as the suite's clients reach it.
type cluster struct {
	name string // cluster-a
	// kubeconfig and context select the cluster for kubectl.
	kubeconfig, context string
	rest                *rest.Config // cluster-admin
	cs                  clients
	// deploy is the kustomize directory of its gateway.
	deploy string
}

// clients are the suite's typed clients: the gateway's own set, and
// apps/v1 for the Deployments the suite waits on.
type clients struct {
	*kubeclient.Set
	apps *appsv1client.AppsV1Client
}

// AppsV1 is apps/v1's client.
func (c clients) AppsV1() appsv1client.AppsV1Interface { return c.apps }

func newClients(rc *rest.Config) (clients, error) {
	set, err := kubeclient.New(rc)
	if err != nil {
		return clients{}, err
	}
	apps, err := appsv1client.NewForConfig(rc)
	return clients{Set: set, apps: apps}, err
}

// kubectl runs kubectl against c, with stdin when not nil.
func (c *cluster) kubectl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	bin, err := kubectlPath(ctx)
	if err != nil {
		return nil, err
	}
	full := []string{"--kubeconfig", c.kubeconfig}
	if c.context != "" {
		full = append(full, "--context", c.context)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: kubectl %s: %w: %s", c.name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

var kubectlOnce = struct {
	sync.Once
	path string
	err  error
}{}

// kubectlPath is scripts/kubectl.sh's answer: a kubectl within one minor
// version of the apiserver.
func kubectlPath(ctx context.Context) (string, error) {
	kubectlOnce.Do(func() {
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "scripts", "kubectl.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			kubectlOnce.err = fmt.Errorf("scripts/kubectl.sh: %w", err)
			return
		}
		kubectlOnce.path = strings.TrimSpace(string(out))
	})
	return kubectlOnce.path, kubectlOnce.err
}

// repoRoot is the repository root: the test runs in test/e2e.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err) // the working directory of a test always exists
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// suiteDir is this package's directory (scenarios.yaml, manifests/).
func suiteDir() string { return filepath.Join(repoRoot(), "test", "e2e") }

// findCluster returns the cluster named name.
func findCluster(e env, name string) (*cluster, error) {
	for _, c := range e.clusters() {
		if c.name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no cluster %q", name)
}

// errNotRoot explains why the local suite stops.
var errNotRoot = errors.New("the e2e suite needs root: it creates network namespaces, veth links and mounts (run `sudo make e2e`)")
