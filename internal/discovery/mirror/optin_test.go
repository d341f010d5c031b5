package mirror

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ewgw/ewgw/internal/discovery/kubetest"
	"github.com/ewgw/ewgw/internal/model"
)

// TestOptIn: mirrors go only into namespaces that asked for them, by label
// or by the configured list; a namespace that stops asking loses them; a
// kube-* namespace never gets one.
func TestOptIn(t *testing.T) {
	cs := adminClient(t)
	quiet := nsName(t, cs, false)
	listed := nsName(t, cs, false)
	for _, ns := range []string{quiet, listed, "kube-public"} {
		if err := kubetest.EnsureNamespace(t.Context(), cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	// kube-public, even labelled, stays untouched.
	if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), "kube-public", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+LabelImport+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Client: cs, Port: gatewayPort, Replica: "gw-0", Logger: testLogger(t),
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, Namespaces: []string{listed}})
	if err != nil {
		t.Fatal(err)
	}
	m.Set([]model.Export{export(quiet, "web", 443), export(listed, "web", 443),
		export("kube-public", "web", 443)})
	start(t, m)
	waitFor(t, cs, listed, mirrorState("web-global", []int32{443}, "gw-0/IPv4"))
	waitSettled(t, m)
	for _, ns := range []string{quiet, "kube-public"} {
		if o := list(t, cs, ns); empty(o) != "" {
			t.Errorf("%s: %s, want nothing: it did not opt in", ns, empty(o))
		}
	}

	label := func(v string) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, LabelImport, v)
		if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), quiet, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(`"true"`)
	waitFor(t, cs, quiet, mirrorState("web-global", []int32{443}, "gw-0/IPv4"))
	label("null")
	waitFor(t, cs, quiet, empty)
}

// TestCap: past MaxServices, the desired services last in namespace/name
// order are left out and counted.
func TestCap(t *testing.T) {
	cs := adminClient(t)
	ns := nsName(t, cs, true)
	m, err := New(Config{Client: cs, Port: gatewayPort, Replica: "gw-0", Logger: testLogger(t),
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, MaxServices: 2})
	if err != nil {
		t.Fatal(err)
	}
	m.Set([]model.Export{export(ns, "c", 443), export(ns, "a", 443),
		export(ns, "b", 443)})
	start(t, m)
	o := waitFor(t, cs, ns, func(o objects) string {
		if len(o.services) != 2 {
			return fmt.Sprintf("%d services", len(o.services))
		}
		return ""
	})
	waitSettled(t, m)
	if _, ok := o.services["c-global"]; ok {
		t.Errorf("kept c-global past the cap: %v", o.services)
	}
	if got := testutil.ToFloat64(m.m.skipped); got != 1 {
		t.Errorf("ewgw_mirror_skipped_total = %v, want 1", got)
	}
}
