package deploy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/discovery/kubetest"
)

// One apiserver for the package, started by the first test that needs it.
var cluster = kubetest.Lazy{CRD: true}

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// testCluster returns the package's apiserver, with the MCS ServiceExport
// CRD installed, starting it on first use.
func testCluster(t *testing.T) *kubetest.Cluster { return cluster.Get(t) }

// adminKubeconfig writes a cluster-admin kubeconfig for kubectl.
func adminKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := testCluster(t).Kubeconfig(p, ""); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServerDryRun applies every variant with a server-side dry run: the
// apiserver validates each object (strict field validation, defaulting,
// admission) without storing it.
func TestServerDryRun(t *testing.T) {
	kc := adminKubeconfig(t)
	// Namespaced objects dry-run only into a namespace that exists.
	kubectl(t, nil, "--kubeconfig", kc, "apply", "-f", filepath.Join(deployDir(t), "base", "namespace.yaml"))
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			r := render(t, v.dir)
			out := kubectl(t, r.yaml, "--kubeconfig", kc, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			if n := strings.Count(string(out), "(server dry run)"); n != len(r.objects) {
				t.Errorf("%d of %d objects applied:\n%s", n, len(r.objects), out)
			}
		})
	}
	t.Run("ewgw-identity", func(t *testing.T) {
		// The Secret manifest `ewgw certs` writes lands in the gateway's namespace.
		secret := certgen.SecretYAML(certgen.SecretIdentity, namespace, identities(t)["cluster-a"].IdentityFiles())
		kubectl(t, secret, "--kubeconfig", kc, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
	})
}

// access is one request attribute set to review.
type access struct {
	verb, group, resource, namespace string
}

func (a access) String() string {
	return fmt.Sprintf("%s %s.%s in %q", a.verb, a.resource, a.group, a.namespace)
}

// TestRBACLeastPrivilege applies the default variant, then the import
// variant, for real and asks the apiserver, as the gateway's
// ServiceAccount, what it may do.
func TestRBACLeastPrivilege(t *testing.T) {
	c := testCluster(t)
	kc := adminKubeconfig(t)
	t.Cleanup(func() { removeImportRBAC(t, c) }) // the other tests expect the read-only gateway
	kubectl(t, render(t, ".").yaml, "--kubeconfig", kc, "apply", "-f", "-")
	sa, err := c.ServiceAccountConfig(t.Context(), namespace, "ewgw")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubeclient.New(sa)
	if err != nil {
		t.Fatal(err)
	}

	var read, write []access
	for _, r := range []access{{group: "", resource: "services"}, {group: "", resource: "namespaces"},
		{group: "discovery.k8s.io", resource: "endpointslices"}, {group: "multicluster.x-k8s.io", resource: "serviceexports"}} {
		for _, verb := range []string{"list", "watch"} {
			read = append(read, access{verb: verb, group: r.group, resource: r.resource})
		}
	}
	for _, r := range []access{{group: "", resource: "services"}, {group: "discovery.k8s.io", resource: "endpointslices"}} {
		for _, verb := range []string{"get", "create", "update", "delete"} {
			write = append(write, access{verb: verb, group: r.group, resource: r.resource, namespace: "shop"})
		}
	}
	never := []access{
		{verb: "get", resource: "secrets", namespace: namespace},
		{verb: "list", resource: "secrets"},
		{verb: "create", resource: "secrets", namespace: "shop"},
		{verb: "create", resource: "pods", namespace: "shop"},
		{verb: "delete", resource: "pods", namespace: "shop"},
		{verb: "list", resource: "pods"},
		{verb: "update", resource: "configmaps", namespace: namespace},
		{verb: "patch", resource: "services", namespace: "shop"},
		{verb: "deletecollection", group: "discovery.k8s.io", resource: "endpointslices", namespace: "shop"},
		{verb: "create", group: "multicluster.x-k8s.io", resource: "serviceexports", namespace: "shop"},
		{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
		{verb: "impersonate", resource: "serviceaccounts", namespace: namespace},
	}

	t.Run("default", func(t *testing.T) {
		expectAccess(t, cs, read, true)
		expectAccess(t, cs, write, false)
		expectAccess(t, cs, never, false)
	})
	t.Run("import", func(t *testing.T) {
		kubectl(t, render(t, "variants/import").yaml, "--kubeconfig", kc, "apply", "-f", "-")
		expectAccess(t, cs, read, true)
		expectAccess(t, cs, write, true)
		expectAccess(t, cs, never, false)
	})
}

// expectAccess waits until every review answers allowed == want. The
// authorizer picks up new bindings from its own watch, so a fresh binding
// takes a moment to count; there is no event to wait on from outside, so
// this polls, with a deadline.
func expectAccess(t *testing.T, cs *kubeclient.Set, list []access, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		wrong, err := reviewAll(ctx, cs, list, want)
		if err == nil && len(wrong) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			if err != nil {
				t.Fatalf("SelfSubjectAccessReview: %v", err)
			}
			for _, a := range wrong {
				t.Errorf("%s: allowed = %v, want %v", a, !want, want)
			}
			return
		case <-tick.C:
		}
	}
}

// reviewAll asks about each access and returns those whose answer is not want.
func reviewAll(ctx context.Context, cs *kubeclient.Set, list []access, want bool) ([]access, error) {
	var wrong []access
	for _, a := range list {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if r.Status.Allowed != want {
			wrong = append(wrong, a)
		}
	}
	return wrong, nil
}

// removeImportRBAC deletes what the import variant added to RBAC. It runs
// in Cleanup, after the test's context is done.
func removeImportRBAC(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	cs, err := kubeclient.New(c.Admin())
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rbac := cs.RbacV1()
	for _, del := range []func() error{
		func() error { return rbac.ClusterRoleBindings().Delete(ctx, "ewgw-import", metav1.DeleteOptions{}) },
		func() error { return rbac.ClusterRoles().Delete(ctx, "ewgw-import", metav1.DeleteOptions{}) },
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
}
