package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/config"
)

// variant is one kustomization the repository ships and what it must
// render to.
type variant struct {
	dir      string // relative to deploy/
	kind     string // the workload: Deployment or DaemonSet
	identity string // "secret" (ewgw-identity) or "csi" (SPIFFE CSI driver)
	imports  bool   // discovery.import and the ClusterRole ewgw-import
}

var variants = []variant{
	{dir: ".", kind: "Deployment", identity: "secret"},
	{dir: "variants/certs-secret", kind: "Deployment", identity: "secret"},
	{dir: "variants/daemonset", kind: "DaemonSet", identity: "secret"},
	{dir: "variants/spiffe-csi", kind: "Deployment", identity: "csi"},
	{dir: "variants/import", kind: "Deployment", identity: "secret", imports: true},
	{dir: "examples/cluster-a", kind: "Deployment", identity: "secret", imports: true},
	{dir: "examples/cluster-b", kind: "Deployment", identity: "secret", imports: true},
	{dir: "examples/custom", kind: "DaemonSet", identity: "csi", imports: true},
}

const (
	namespace    = "ewgw"
	certsDir     = "/var/run/ewgw/certs"
	spiffeSocket = "unix:///spiffe-workload-api/spire-agent.sock"
	adminPort    = 15000
)

// rendered is a variant's output: the raw YAML and its objects, typed.
type rendered struct {
	yaml     []byte
	objects  []runtime.Object
	workload *corev1.PodTemplateSpec
	config   *config.Config
}

func TestRender(t *testing.T) {
	ids := identities(t)
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			r := render(t, v.dir)
			checkWorkload(t, v, r)
			checkConfig(t, v, r, ids)
			checkRBAC(t, v, r)
		})
	}
}

// TestPodTemplatesInStep keeps the two workloads' pod templates equal but
// for placement, since kustomize cannot derive one kind from the other.
func TestPodTemplatesInStep(t *testing.T) {
	dep := render(t, "variants/certs-secret").workload.DeepCopy()
	ds := render(t, "variants/daemonset").workload.DeepCopy()
	if ds.Spec.NodeSelector["ewgw.io/gateway"] != "true" {
		t.Errorf("DaemonSet nodeSelector = %v, want ewgw.io/gateway=true", ds.Spec.NodeSelector)
	}
	if len(dep.Spec.TopologySpreadConstraints) != 2 {
		t.Errorf("Deployment has %d topology spread constraints, want zone and hostname", len(dep.Spec.TopologySpreadConstraints))
	}
	dep.Spec.TopologySpreadConstraints = nil
	ds.Spec.NodeSelector, ds.Spec.Tolerations = nil, nil
	if !equalJSON(t, dep, ds) {
		t.Errorf("pod templates differ beyond placement:\nDeployment: %s\nDaemonSet:  %s", mustJSON(t, dep), mustJSON(t, ds))
	}
}

func checkWorkload(t *testing.T, v variant, r rendered) {
	t.Helper()
	var kinds []string
	for _, o := range r.objects {
		switch o.(type) {
		case *appsv1.Deployment, *appsv1.DaemonSet:
			kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		}
	}
	if !slices.Equal(kinds, []string{v.kind}) {
		t.Fatalf("workloads %v, want exactly one %s", kinds, v.kind)
	}
	spec := r.workload.Spec
	c := spec.Containers[0]
	sc, psc := c.SecurityContext, spec.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatal("no pod or container securityContext")
	case !ptrIs(psc.RunAsNonRoot, true) || !ptrIs(psc.RunAsUser, 65532):
		t.Error("pod must run as non-root user 65532")
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod seccompProfile must be RuntimeDefault")
	case !ptrIs(sc.ReadOnlyRootFilesystem, true) || !ptrIs(sc.AllowPrivilegeEscalation, false):
		t.Error("container needs readOnlyRootFilesystem and no privilege escalation")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("container must drop ALL capabilities and add none")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe: want GET %s on port admin", name, want)
		}
	}
	if port := containerPort(c, "admin"); port != adminPort {
		t.Errorf("admin containerPort = %d, want %d", port, adminPort)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container needs cpu requests and memory limits")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, field := range map[string]string{"POD_IP": "status.podIP", "POD_IPS": "status.podIPs", "POD_NAME": "metadata.name", "POD_UID": "metadata.uid"} {
		if env[name] != field {
			t.Errorf("env %s: downward API %q, want %q", name, env[name], field)
		}
	}
}

// checkConfig checks the ConfigMap the workload mounts: it exists under the
// name kustomize gave it, holds a config the gateway accepts, and points at
// what the pod mounts.
func checkConfig(t *testing.T, v variant, r rendered, ids map[string]*certgen.Cluster) {
	t.Helper()
	cfg := r.config
	if host, port, _ := net.SplitHostPort(cfg.Admin.Listen); !slices.Contains([]string{"", "0.0.0.0", "::"}, host) || port != "15000" {
		t.Errorf("admin.listen %q: the kubelet's probes need :15000 on the pod's address", cfg.Admin.Listen)
	}
	if cfg.Discovery.Kubernetes == nil || cfg.Discovery.Kubernetes.Kubeconfig != "" {
		t.Error("discovery.kubernetes must use the in-cluster config")
	}
	if got := cfg.Discovery.Import != nil; got != v.imports {
		t.Errorf("discovery.import set = %v, want %v", got, v.imports)
	}
	grace := time.Duration(ptrVal(r.workload.Spec.TerminationGracePeriodSeconds)) * time.Second
	if pre := preStopSleep(r.workload); grace <= cfg.DrainTimeout.D()+pre {
		t.Errorf("terminationGracePeriodSeconds %v must exceed drain_timeout %v plus the preStop pause %v", grace, cfg.DrainTimeout.D(), pre)
	}
	if cfg.Peering == nil {
		t.Fatal("no peering section")
	}
	mounts := map[string]corev1.Volume{}
	for _, m := range r.workload.Spec.Containers[0].VolumeMounts {
		for _, vol := range r.workload.Spec.Volumes {
			if vol.Name == m.Name {
				mounts[m.MountPath] = vol
			}
		}
	}
	switch id := cfg.Peering.Identity; v.identity {
	case "secret":
		vol := mounts[certsDir]
		if vol.Secret == nil || vol.Secret.SecretName != certgen.SecretIdentity {
			t.Fatalf("%s: want the Secret %s mounted, got %+v", certsDir, certgen.SecretIdentity, vol)
		}
		if id.Files == nil {
			t.Fatal("peering.identity.files not set")
		}
		checkIdentityFiles(t, cfg, ids[cfg.Cluster])
	case "csi":
		vol := mounts["/spiffe-workload-api"]
		if vol.CSI == nil || vol.CSI.Driver != "csi.spiffe.io" {
			t.Fatalf("/spiffe-workload-api: want a csi.spiffe.io volume, got %+v", vol)
		}
		if id.WorkloadAPI == nil || id.WorkloadAPI.Socket != spiffeSocket {
			t.Errorf("peering.identity.workload_api.socket: want %s", spiffeSocket)
		}
	}
}

// checkIdentityFiles checks that the config reads exactly the files that
// `ewgw certs` puts in the Secret ewgw-identity for this cluster.
func checkIdentityFiles(t *testing.T, cfg *config.Config, c *certgen.Cluster) {
	t.Helper()
	if c == nil {
		t.Fatalf("cluster %q: not one `ewgw certs` made in this test", cfg.Cluster)
	}
	keys := map[string]bool{}
	for _, f := range c.IdentityFiles() {
		keys[f.Name] = true
	}
	files := cfg.Peering.Identity.Files
	want := map[string]string{"cert_chain": certgen.FileSVID, "key": certgen.FileSVIDKey}
	for field, p := range map[string]string{"cert_chain": files.CertChain, "key": files.Key} {
		if p != path.Join(certsDir, want[field]) {
			t.Errorf("identity.files.%s = %s, want %s", field, p, path.Join(certsDir, want[field]))
		}
	}
	for _, td := range c.TrustDomains() {
		want := path.Join(certsDir, certgen.BundleFile(c.TrustDomain, td))
		if got := files.Bundles[td]; got != want {
			t.Errorf("identity.files.bundles[%s] = %q, want %s", td, got, want)
		}
	}
	for td, p := range files.Bundles {
		if dir, name := path.Split(p); path.Clean(dir) != certsDir || !keys[name] {
			t.Errorf("identity.files.bundles[%s] = %s: not a file of the Secret %s", td, p, certgen.SecretIdentity)
		}
	}
}

// checkRBAC checks that the write verbs come only with import.
func checkRBAC(t *testing.T, v variant, r rendered) {
	t.Helper()
	var roles []string
	for _, o := range r.objects {
		if cr, ok := o.(*rbacv1.ClusterRole); ok {
			roles = append(roles, cr.Name)
			for _, rule := range cr.Rules {
				if cr.Name == "ewgw" && slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "list" && v != "watch" }) {
					t.Errorf("ClusterRole ewgw grants %v on %v: it must stay read-only", rule.Verbs, rule.Resources)
				}
			}
		}
	}
	want := []string{"ewgw"}
	if v.imports {
		want = append(want, "ewgw-import")
	}
	if slices.Sort(roles); !slices.Equal(roles, want) {
		t.Errorf("ClusterRoles %v, want %v", roles, want)
	}
}

// identities mints the identities of the walk-through's two clusters the
// way `ewgw certs --clusters cluster-a,cluster-b` does.
func identities(t *testing.T) map[string]*certgen.Cluster {
	t.Helper()
	s, err := certgen.Generate(certgen.Plan{Clusters: []string{"cluster-a", "cluster-b"}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*certgen.Cluster{}
	for _, c := range s.Clusters {
		m[c.Name] = c
	}
	return m
}

// render runs kubectl kustomize on deploy/<dir> and decodes the result.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	out := kubectl(t, nil, "kustomize", filepath.Join(deployDir(t), dir))
	r := rendered{yaml: out, objects: decode(t, out)}
	var cms []*corev1.ConfigMap
	for _, o := range r.objects {
		switch o := o.(type) {
		case *appsv1.Deployment:
			r.workload = &o.Spec.Template
		case *appsv1.DaemonSet:
			r.workload = &o.Spec.Template
		case *corev1.ConfigMap:
			cms = append(cms, o)
		}
		if m, ok := o.(interface{ GetNamespace() string }); ok && m.GetNamespace() != "" && m.GetNamespace() != namespace {
			t.Errorf("%T in namespace %q, want %s", o, m.GetNamespace(), namespace)
		}
	}
	if r.workload == nil || len(r.workload.Spec.Containers) != 1 {
		t.Fatal("no workload with one container")
	}
	r.config = mountedConfig(t, r.workload, cms)
	return r
}

// mountedConfig returns the config in the ConfigMap mounted at /etc/ewgw,
// parsed and validated as `ewgw run` does.
func mountedConfig(t *testing.T, pod *corev1.PodTemplateSpec, cms []*corev1.ConfigMap) *config.Config {
	t.Helper()
	var name string
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if m.MountPath == "/etc/ewgw" && v.Name == m.Name && v.ConfigMap != nil {
				name = v.ConfigMap.Name
			}
		}
	}
	if args := pod.Spec.Containers[0].Args; !slices.Equal(args, []string{"run", "--config", "/etc/ewgw/ewgw.yaml"}) {
		t.Errorf("container args %v, want run --config /etc/ewgw/ewgw.yaml", args)
	}
	for _, cm := range cms {
		if cm.Name == name {
			cfg, err := config.Parse([]byte(cm.Data["ewgw.yaml"]))
			if err != nil {
				t.Fatalf("ConfigMap %s: ewgw.yaml: %v", name, err)
			}
			return cfg
		}
	}
	t.Fatalf("the ConfigMap mounted at /etc/ewgw (%q) is not in the output", name)
	return nil
}

// decode splits multi-document YAML into typed objects.
func decode(t *testing.T, b []byte) []runtime.Object {
	t.Helper()
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []runtime.Object
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		o, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		objs = append(objs, o)
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func preStopSleep(pod *corev1.PodTemplateSpec) time.Duration {
	if lc := pod.Spec.Containers[0].Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Sleep != nil {
		return time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
	}
	return 0
}

func ptrIs[T comparable](p *T, v T) bool { return p != nil && *p == v }

func ptrVal[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}

// kubectl runs the kubectl of scripts/kubectl.sh with stdin and returns its
// stdout, failing the test with its stderr. Warnings fail the test too: the
// apiserver warns about deprecated fields and, in a namespace labelled
// pod-security.kubernetes.io/warn, about pods that would violate the level.
func kubectl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), kubectlPath(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	if bytes.Contains(stderr.Bytes(), []byte("Warning:")) {
		t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), stderr.Bytes())
	}
	return out
}

var (
	kubectlOnce sync.Once
	kubectlBin  string
	kubectlErr  error
)

// kubectlPath returns the kubectl scripts/kubectl.sh picks (or builds, the
// first time: minutes).
func kubectlPath(t *testing.T) string {
	t.Helper()
	kubectlOnce.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", "kubectl.sh"))
		cmd.Stderr = os.Stderr
		var out []byte
		out, kubectlErr = cmd.Output()
		kubectlBin = strings.TrimSpace(string(out))
	})
	if kubectlErr != nil {
		t.Fatalf("scripts/kubectl.sh: %v", kubectlErr)
	}
	return kubectlBin
}

func deployDir(t *testing.T) string { return filepath.Join(repoRoot(t), "deploy") }

// repoRoot walks up from the working directory to the directory of go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}
