package kube

import (
	"context"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

func exported(want bool) func(route.Service) bool {
	return func(s route.Service) bool { return s.Exported == want }
}

func TestExportAnnotation(t *testing.T) {
	kc, _ := adminClients(t)
	ns := newNamespace(t, kc)
	r := startSource(t, Config{Client: kc, Namespace: ns})
	key := model.ServiceKey{Namespace: ns, Name: "web"}

	svc := createService(t, kc, newService(ns, "web", map[string]string{AnnotationExport: "true"}, svcPort("", 443)))
	r.waitService(t, key, "exported", exported(true))

	delete(svc.Annotations, AnnotationExport)
	svc = updateService(t, kc, svc)
	r.waitService(t, key, "cluster-local", exported(false))

	svc.Annotations = map[string]string{AnnotationExport: "false"}
	svc = updateService(t, kc, svc)
	svc.Annotations[AnnotationExport] = "true"
	updateService(t, kc, svc)
	r.waitService(t, key, "exported again", exported(true))
}

func TestServiceExport(t *testing.T) {
	needCRD(t)
	kc, mcs := adminClients(t)
	ns := newNamespace(t, kc)
	r := startSource(t, Config{Client: kc, MCS: mcs, Namespace: ns})
	if strings.Contains(r.logs.String(), "not installed") {
		t.Errorf("logs say the CRD is not installed:\n%s", r.logs)
	}
	key := model.ServiceKey{Namespace: ns, Name: "web"}
	createService(t, kc, newService(ns, "web", nil, svcPort("", 443)))
	r.waitService(t, key, "cluster-local", exported(false))

	se := &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	if _, err := mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitService(t, key, "exported by a v1alpha1 ServiceExport", exported(true))
	if err := mcs.MulticlusterV1alpha1().ServiceExports(ns).Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitService(t, key, "unexported", exported(false))

	// Written as v1beta1, seen through the v1alpha1 watch: one resource.
	se2 := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	if _, err := mcs.MulticlusterV1beta1().ServiceExports(ns).Create(t.Context(), se2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitService(t, key, "exported by a v1beta1 ServiceExport", exported(true))

	// A ServiceExport created before its Service.
	if _, err := mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(t.Context(),
		&mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createService(t, kc, newService(ns, "late", nil, svcPort("", 443)))
	r.waitService(t, model.ServiceKey{Namespace: ns, Name: "late"}, "exported", exported(true))
}

// hideGroup makes the apiserver's discovery answer as if group were not
// installed: requests for it go to a group that does not exist, so the
// real 404 comes back.
type hideGroup struct {
	Client
	group string
}

func (h hideGroup) Discovery() discovery.DiscoveryInterfaces {
	return hiddenDiscovery{h.Client.Discovery(), h.group}
}

type hiddenDiscovery struct {
	discovery.DiscoveryInterfaces
	group string
}

func (d hiddenDiscovery) ServerResourcesForGroupVersionWithContext(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
	if strings.HasPrefix(gv, d.group+"/") {
		gv = "not-installed." + gv
	}
	return d.DiscoveryInterfaces.ServerResourcesForGroupVersionWithContext(ctx, gv)
}

// TestWithoutServiceExportCRD runs the source where the apiserver does not
// serve ServiceExports: it logs that once and exports by annotation only.
func TestWithoutServiceExportCRD(t *testing.T) {
	needCRD(t) // so that a ServiceExport exists, and is ignored
	kc, mcs := adminClients(t)
	ns := newNamespace(t, kc)
	createService(t, kc, newService(ns, "by-cr", nil, svcPort("", 443)))
	createService(t, kc, newService(ns, "by-annotation", map[string]string{AnnotationExport: "true"}, svcPort("", 443)))
	if _, err := mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(t.Context(),
		&mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-cr"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := startSource(t, Config{Client: hideGroup{kc, mcsGroup}, MCS: mcs, Namespace: ns})
	first := r.wait(t, "both services", func(svcs []route.Service) bool { return len(svcs) == 2 })
	if got := []bool{first.svcs[0].Exported, first.svcs[1].Exported}; !reflect.DeepEqual(got, []bool{true, false}) {
		t.Errorf("exported (by-annotation, by-cr) = %v, want [true false]: %s", got, format(first.svcs))
	}
	if n := strings.Count(r.logs.String(), "ServiceExport CRD not installed"); n != 1 {
		t.Errorf("%d log lines about the missing CRD, want 1:\n%s", n, r.logs)
	}
}

// TestServedVersion checks the discovery of ServiceExport versions against
// the apiserver's real answers.
func TestServedVersion(t *testing.T) {
	needCRD(t)
	kc, _ := adminClients(t)
	d := kc.Discovery()
	tests := []struct {
		group, resource string
		versions        []string
		want            string
	}{
		{mcsGroup, "serviceexports", exportVersions, "v1alpha1"},
		{mcsGroup, "serviceexports", []string{"v1beta1"}, "v1beta1"},
		{mcsGroup, "serviceexports", []string{"v1", "v1beta1"}, "v1beta1"},
		{mcsGroup, "widgets", exportVersions, ""},
		{"not-installed.example.com", "serviceexports", exportVersions, ""},
	}
	for _, tt := range tests {
		got, err := servedVersion(t.Context(), d, tt.group, tt.resource, tt.versions)
		if err != nil || got != tt.want {
			t.Errorf("servedVersion(%s, %s, %v) = %q, %v; want %q", tt.group, tt.resource, tt.versions, got, err, tt.want)
		}
	}
	// Only NotFound means "not served"; other errors fail the preflight.
	_, err := d.ServerResourcesForGroupVersionWithContext(t.Context(), "not-installed.example.com/v1")
	if !apierrors.IsNotFound(err) {
		t.Errorf("discovery of a missing group: %v, want NotFound", err)
	}
}
