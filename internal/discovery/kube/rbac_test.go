package kube

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclientset "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// sourceRules are the rules the source needs: what the project's
// ClusterRole grants.
var sourceRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"list", "watch"}},
}

// serviceAccount creates a ServiceAccount "ewgw" in a namespace of its
// own, a ClusterRole with rules, and binds them: cluster-wide, or in
// bindIn with a RoleBinding. It returns the account's clients and name.
func serviceAccount(t *testing.T, kc *kubeclient.Set, rules []rbacv1.PolicyRule, bindIn string) (*kubeclient.Set, mcsclientset.Interface, string) {
	t.Helper()
	ctx := t.Context()
	saNS := newNamespace(t, kc)
	rc, err := cluster.ServiceAccountConfig(ctx, saNS, "ewgw")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: saNS}, Rules: rules}
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: "ewgw"}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: saNS}
	if bindIn == "" {
		_, err = kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: saNS}, Subjects: subjects, RoleRef: ref,
		}, metav1.CreateOptions{})
	} else {
		_, err = kc.RbacV1().RoleBindings(bindIn).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: saNS}, Subjects: subjects, RoleRef: ref,
		}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + saNS + ":ewgw"
	if len(rules) > 0 {
		awaitGrant(t, kc, user, rules[0], bindIn)
	}
	sa, mcs, err := NewClients(rc)
	if err != nil {
		t.Fatal(err)
	}
	return sa, mcs, user
}

// awaitGrant waits until the apiserver's authorizer, which learns of new
// bindings through its informers, grants user the first verb of rule
// (in namespace ns; "" for all).
func awaitGrant(t *testing.T, kc *kubeclient.Set, user string, rule rbacv1.PolicyRule, ns string) {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: rule.Resources[0]},
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := kc.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), review, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never granted %s %s: %v", user, rule.Verbs[0], rule.Resources[0], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runFails runs a source that must fail its preflight, and returns the
// RBACError.
func runFails(t *testing.T, cfg Config) *RBACError {
	t.Helper()
	var reports int
	cfg.Update = func([]route.Service) { reports++ }
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	err = src.Run(ctx)
	t.Logf("Run failed after %v: %v", time.Since(start), err)
	var rbacErr *RBACError
	if !errors.As(err, &rbacErr) {
		t.Fatalf("Run: %v, want an *RBACError", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Run took %v to fail, want it at once", time.Since(start))
	}
	if reports != 0 || src.Synced() {
		t.Errorf("a failed source reported %d snapshots, synced %v", reports, src.Synced())
	}
	return rbacErr
}

func TestRBACMissingVerb(t *testing.T) {
	needCRD(t)
	kc, _ := adminClients(t)
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"list"}},
	}

	t.Run("cluster-wide", func(t *testing.T) {
		sa, mcs, user := serviceAccount(t, kc, rules, "")
		rbacErr := runFails(t, Config{Client: sa, MCS: mcs})
		want := &RBACError{User: user, Missing: []Permission{
			{Verb: "watch", Group: discoveryv1.GroupName, Resource: "endpointslices"},
			{Verb: "watch", Group: mcsGroup, Resource: "serviceexports"},
		}}
		if !reflect.DeepEqual(rbacErr, want) {
			t.Errorf("error %#v, want %#v", rbacErr, want)
		}
		msg := "kubernetes RBAC: " + user + " may not watch endpointslices.discovery.k8s.io (all namespaces), " +
			"may not watch serviceexports.multicluster.x-k8s.io (all namespaces): grant them in the ClusterRole"
		if rbacErr.Error() != msg {
			t.Errorf("message\n%s\nwant\n%s", rbacErr, msg)
		}
	})

	t.Run("one namespace, annotation only", func(t *testing.T) {
		ns := newNamespace(t, kc)
		sa, _, user := serviceAccount(t, kc, rules, ns)
		rbacErr := runFails(t, Config{Client: sa, Namespace: ns})
		msg := "kubernetes RBAC: " + user + " may not watch endpointslices.discovery.k8s.io (namespace " + ns + "): " +
			"grant them in a Role or ClusterRole bound in namespace " + ns
		if rbacErr.Error() != msg {
			t.Errorf("message\n%s\nwant\n%s", rbacErr, msg)
		}
	})

	t.Run("nothing granted", func(t *testing.T) {
		sa, mcs, _ := serviceAccount(t, kc, nil, "")
		rbacErr := runFails(t, Config{Client: sa, MCS: mcs})
		if len(rbacErr.Missing) != 6 {
			t.Errorf("missing %v, want all six permissions", rbacErr.Missing)
		}
	})
}

func TestRBACComplete(t *testing.T) {
	needCRD(t)
	kc, mcs := adminClients(t)
	ns := newNamespace(t, kc)
	createService(t, kc, newService(ns, "web", nil, svcPort("https", 443)))
	createSlice(t, kc, newSlice(ns, "web-1", "web", v4, slicePorts("https", 8443), ready("10.0.3.1")))
	if _, err := mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(t.Context(),
		&mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := model.ServiceKey{Namespace: ns, Name: "web"}
	isUp := func(s route.Service) bool { return s.Exported && hasEndpoints(443, "10.0.3.1:8443")(s) }

	t.Run("cluster-wide", func(t *testing.T) {
		sa, saMCS, _ := serviceAccount(t, kc, sourceRules, "")
		r := startSource(t, Config{Client: sa, MCS: saMCS})
		r.waitService(t, key, "exported with its endpoint", isUp)
		if strings.Contains(r.logs.String(), "level=WARN") {
			t.Errorf("warnings:\n%s", r.logs)
		}
	})

	t.Run("one namespace", func(t *testing.T) {
		sa, saMCS, _ := serviceAccount(t, kc, sourceRules, ns)
		r := startSource(t, Config{Client: sa, MCS: saMCS, Namespace: ns})
		first := r.wait(t, key.String(), func(svcs []route.Service) bool { return len(svcs) > 0 })
		if len(first.svcs) != 1 || !isUp(first.svcs[0]) {
			t.Errorf("snapshot %s, want only %s, exported with its endpoint", format(first.svcs), key)
		}
	})
}
