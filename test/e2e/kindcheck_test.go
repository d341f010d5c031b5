//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The kind run cannot run where `make e2e` does (no Docker), so these keep
// it honest here: its script passes bash -n and shellcheck, and the
// overlay it applies renders to what kind needs.

func TestKindScript(t *testing.T) {
	scripts, err := filepath.Glob(filepath.Join(suiteDir(), "kind", "*.sh"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in kind/: %v", err)
	}
	for _, s := range scripts {
		for _, lint := range [][]string{{"bash", "-n", s}, {"shellcheck", "--severity=style", s}} {
			if _, err := exec.LookPath(lint[0]); err != nil {
				t.Fatalf("%s not found: run `make e2e`, which installs it", lint[0])
			}
			if out, err := exec.Command(lint[0], lint[1:]...).CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", strings.Join(lint, " "), err, out)
			}
		}
	}
}

// TestKindOverlay renders kind's overlay of each deploy/examples cluster:
// the peer is the other node at NodePort 30443, ewgw-peering pins that
// port on UDP, and nothing else of the example changes.
func TestKindOverlay(t *testing.T) {
	for _, name := range []string{"cluster-a", "cluster-b"} {
		t.Run(name, func(t *testing.T) {
			dir, err := kindOverlay(filepath.Join(t.TempDir(), "deploy"), name, "172.18.0.9:"+kindNodePort)
			if err != nil {
				t.Fatal(err)
			}
			kubectl, err := kubectlPath(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
			}
			var cfg string
			var ports []corev1.ServicePort
			var replicas int32
			for _, doc := range strings.Split(string(out), "\n---\n") {
				var meta struct{ Kind string }
				if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
					t.Fatal(err)
				}
				switch meta.Kind {
				case "ConfigMap":
					var cm corev1.ConfigMap
					if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
						t.Fatal(err)
					}
					cfg = cm.Data["ewgw.yaml"]
				case "Service":
					var svc corev1.Service
					if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
						t.Fatal(err)
					}
					if svc.Name == "ewgw-peering" {
						ports = svc.Spec.Ports
					}
				case "Deployment":
					var d appsv1.Deployment
					if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
						t.Fatal(err)
					}
					replicas = *d.Spec.Replicas
				}
			}
			if !strings.Contains(cfg, `addrs: ["172.18.0.9:30443"]`) || !strings.Contains(cfg, "cluster: "+name) {
				t.Errorf("config: want cluster %s and peer 172.18.0.9:30443:\n%s", name, cfg)
			}
			if len(ports) != 2 || ports[0].NodePort != 30443 || ports[0].Protocol != corev1.ProtocolUDP ||
				ports[1].NodePort != 30443 || ports[1].Protocol != corev1.ProtocolTCP {
				t.Errorf("ewgw-peering ports %+v: want UDP and TCP (the fallback), on node port 30443", ports)
			}
			if replicas == 0 {
				t.Error("no gateway Deployment rendered")
			}
		})
	}
}
