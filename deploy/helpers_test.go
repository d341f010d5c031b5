package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/config"
)

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

func containerPort(c corev1.Container, name string) int32 { return namedPort(c, name).ContainerPort }

// namedPort is c's port named name (names are unique in a container), or
// the zero port.
func namedPort(c corev1.Container, name string) corev1.ContainerPort {
	for _, p := range c.Ports {
		if p.Name == name {
			return p
		}
	}
	return corev1.ContainerPort{}
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
	cmd := kubectlCmd(t, stdin, args...)
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

// kubectlResult runs kubectl like kubectl does, but returns its combined
// output and error instead of failing the test.
func kubectlResult(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	out, err := kubectlCmd(t, stdin, args...).CombinedOutput()
	return string(out), err
}

// kubectlCmd is kubectl with args, reading stdin when it is not nil.
func kubectlCmd(t *testing.T, stdin []byte, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), kubectlPath(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd
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
		cmd := exec.CommandContext(t.Context(), filepath.Join(repoRoot(t), "scripts", "kubectl.sh"))
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
