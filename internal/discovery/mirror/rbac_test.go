package mirror

import (
	"context"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
)

// rbacRules are exactly the permissions a Mirror needs, cluster-wide.
var rbacRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
}

// TestRBACSuffices runs a replica as a ServiceAccount bound to rbacRules
// only, through every path (create, conflict, a namespace created later,
// update, delete), and counts the apiserver's refusals: there must be none.
func TestRBACSuffices(t *testing.T) {
	cs := adminClient(t)
	saNS := nsName(t, cs, true)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "ewgw-mirror-" + saNS}, Rules: rbacRules}
	if _, err := cs.RbacV1().ClusterRoles().Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: "gateway"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := testCluster(t).ServiceAccountConfig(t.Context(), saNS, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	var forbidden atomic.Int64
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return refusals{rt, &forbidden} })
	sa, err := kubeclient.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, sa)
	forbidden.Store(0)

	ns := nsName(t, cs, true)
	later := nsName(t, cs, false)
	if _, err := cs.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api-global"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		Client: sa, Port: gatewayPort, Replica: "gw-0", PodUID: "4c1b0a2e-0000-4000-8000-000000000002",
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, m)
	m.Set([]model.Export{
		export(ns, "web", 443),
		export(ns, "api", 443),
		export(later, "web", 443),
	})
	waitFor(t, cs, ns, mirrorState("web-global", []int32{443}, "gw-0/IPv4"))
	if err := ensureNamespace(t, cs, later); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cs, later, mirrorState("web-global", []int32{443}, "gw-0/IPv4"))
	m.Set([]model.Export{export(ns, "web", 443, 8443)})
	waitFor(t, cs, ns, mirrorState("web-global", []int32{443, 8443}, "gw-0/IPv4"))
	waitFor(t, cs, later, empty)
	m.Set(nil)
	waitFor(t, cs, ns, func(o objects) string {
		if len(o.services) != 1 || len(o.slices) != 0 {
			return "mirror not removed yet"
		}
		return ""
	})
	waitSettled(t, m)

	if n := forbidden.Load(); n > 0 {
		t.Errorf("%d requests refused with rules %+v", n, rbacRules)
	}
	if n := testutil.ToFloat64(m.m.conflicts); n != 1 {
		t.Errorf("ewgw_mirror_conflicts_total = %v, want 1 (api-global)", n)
	}
}

// refusals counts 401 and 403 answers.
type refusals struct {
	http.RoundTripper
	n *atomic.Int64
}

func (r refusals) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.RoundTripper.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized) {
		r.n.Add(1)
	}
	return resp, err
}

// waitAllowed waits until the new binding reaches the apiserver's RBAC
// authorizer, which learns of it through its own informers: there is no
// event to wait on from here, so this asks, with a deadline.
func waitAllowed(t *testing.T, cs *kubeclient.Set) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for _, r := range rbacRules {
			for _, v := range r.Verbs {
				review := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
					ResourceAttributes: &authzv1.ResourceAttributes{Group: r.APIGroups[0], Resource: r.Resources[0], Verb: v},
				}}
				res, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
				ok = ok && err == nil && res.Status.Allowed
			}
		}
		if ok {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the ServiceAccount's binding never took effect")
		}
	}
}
