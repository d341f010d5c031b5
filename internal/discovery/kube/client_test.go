package kube

import (
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRESTConfig(t *testing.T) {
	t.Run("neither kubeconfig nor pod", func(t *testing.T) {
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		_, err := RESTConfig("")
		if err == nil || !strings.Contains(err.Error(), "no kubeconfig given and not running in a pod") {
			t.Errorf("RESTConfig(\"\") = %v, want the not-in-a-pod error", err)
		}
	})
	t.Run("missing kubeconfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope")
		_, err := RESTConfig(path)
		if err == nil || !strings.Contains(err.Error(), "kubeconfig "+path) {
			t.Errorf("RESTConfig(%s) = %v, want an error naming the file", path, err)
		}
	})
	t.Run("kubeconfig", func(t *testing.T) {
		needCluster(t)
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := cluster.Kubeconfig(path, ""); err != nil {
			t.Fatal(err)
		}
		rc, err := RESTConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		kc, _, err := NewClients(rc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kc.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
			t.Errorf("get namespace default through the kubeconfig: %v", err)
		}
	})
}
