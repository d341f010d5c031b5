package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// TestImportAdmission: with the import variant applied, the gateway's
// ServiceAccount may write the mirror's own objects, and the
// ValidatingAdmissionPolicy denies every write the mirror would never make,
// which RBAC alone allows. kubectl acts as the ServiceAccount.
func TestImportAdmission(t *testing.T) {
	c := testCluster(t)
	kc := adminKubeconfig(t)
	bin := kubectlPath(t)
	t.Cleanup(func() {
		removeImportRBAC(t, c)
		out, err := exec.Command(bin, "--kubeconfig", kc, "delete", "--ignore-not-found",
			"validatingadmissionpolicybinding/ewgw-import", "validatingadmissionpolicy/ewgw-import").CombinedOutput()
		if err != nil {
			t.Errorf("remove the admission policy: %v\n%s", err, out)
		}
	})
	kubectl(t, render(t, "variants/import").yaml, "--kubeconfig", kc, "apply", "-f", "-")
	kubectl(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: admission}\n"), "--kubeconfig", kc, "apply", "-f", "-")
	// Someone else's Service, which the gateway must leave alone.
	kubectl(t, []byte(service("theirs", "", "")), "--kubeconfig", kc, "create", "-f", "-")
	as := []string{"--kubeconfig", kc, "--as", "system:serviceaccount:ewgw:ewgw", "-n", "admission"}
	denied := func(stdin string, args ...string) error {
		out, err := kubectlResult(t, []byte(stdin), append(slices.Clone(as), args...)...)
		if err == nil {
			return fmt.Errorf("allowed: %s", out)
		}
		if !strings.Contains(out, "ValidatingAdmissionPolicy 'ewgw-import'") {
			return fmt.Errorf("denied, but not by the policy: %s", out)
		}
		return nil
	}
	// The policy takes effect once the apiserver has loaded it.
	if err := pollUntil(t, 30*time.Second, func() error { return denied(service("plain", "", ""), "create", "-f", "-") }); err != nil {
		t.Fatalf("an unlabelled Service: %v", err)
	}
	mine := "\n    app.kubernetes.io/managed-by: ewgw"
	for name, c := range map[string]struct {
		stdin string
		args  []string
	}{
		"a Service with a selector":        {service("sel", mine, "  selector: {app: x}\n"), []string{"create", "-f", "-"}},
		"a LoadBalancer Service":           {service("lb", mine, "  type: LoadBalancer\n"), []string{"create", "-f", "-"}},
		"a Service with external IPs":      {service("ext", mine, "  externalIPs: [192.0.2.1]\n"), []string{"create", "-f", "-"}},
		"labelling someone else's":         {service("theirs", mine, ""), []string{"replace", "-f", "-"}},
		"deleting someone else's":          {"", []string{"delete", "service", "theirs"}},
		"an EndpointSlice of another tool": {slice("other", mine, "someone-else"), []string{"create", "-f", "-"}},
	} {
		if err := denied(c.stdin, c.args...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// What the mirror does write is allowed: create, update, delete.
	for _, args := range [][]string{{"create", "-f", "-"}, {"replace", "-f", "-"}, {"delete", "service", "web-global"}} {
		stdin := ""
		switch args[0] {
		case "create":
			stdin = service("web-global", mine, "")
		case "replace":
			stdin = service("web-global", mine+"\n    ewgw.io/mirror-of: web", "")
		}
		if out, err := kubectlResult(t, []byte(stdin), append(slices.Clone(as), args...)...); err != nil {
			t.Errorf("mirror Service, kubectl %v: %v\n%s", args, err, out)
		}
	}
	if out, err := kubectlResult(t, []byte(slice("web-global-x", mine, "mirror.ewgw.io")), append(slices.Clone(as), "create", "-f", "-")...); err != nil {
		t.Errorf("mirror EndpointSlice: %v\n%s", err, out)
	}
}

// service is a Service manifest in namespace admission with extra labels
// (YAML lines) and spec lines.
func service(name, labels, spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  namespace: admission\n  labels:\n    test: admission" + labels +
		"\nspec:\n  ports: [{port: 443, protocol: TCP}]\n" + spec
}

// slice is an EndpointSlice manifest in namespace admission.
func slice(name, labels, manager string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " + name + "\n  namespace: admission\n  labels:\n" +
		"    kubernetes.io/service-name: web-global\n    endpointslice.kubernetes.io/managed-by: " + manager + labels +
		"\naddressType: IPv4\nendpoints: [{addresses: [10.244.0.5]}]\nports: [{name: tcp-443, port: 15443, protocol: TCP}]\n"
}

// pollUntil calls f until it returns nil or timeout passes, and returns its
// last error.
func pollUntil(t *testing.T, timeout time.Duration, f func() error) error {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
