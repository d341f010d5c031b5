package kube

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

func TestPolicyAnnotations(t *testing.T) {
	kc, _ := adminClients(t)
	ns := newNamespace(t, kc)
	r := startSource(t, Config{Client: kc, Namespace: ns})

	createService(t, kc, newService(ns, "good", map[string]string{
		route.AnnotationDistribute: "east=90, west=10",
		route.AnnotationFailover:   "west",
	}, svcPort("", 443)))
	want := &route.Policy{
		Mode:            route.Distribute,
		Weights:         map[string]map[string]uint32{route.AnyRegion: {"east": 90, "west": 10}},
		FailoverRegions: map[string][]string{route.AnyRegion: {"west"}},
	}
	r.waitService(t, model.ServiceKey{Namespace: ns, Name: "good"}, "its policy", func(s route.Service) bool {
		return reflect.DeepEqual(s.Policy, want)
	})

	bad := createService(t, kc, newService(ns, "bad", map[string]string{route.AnnotationPolicy: "fastest"}, svcPort("", 443)))
	badKey := model.ServiceKey{Namespace: ns, Name: "bad"}
	r.waitService(t, badKey, "the default policy", func(s route.Service) bool { return s.Policy == nil })
	if n := metric(t, r.reg, "ewgw_discovery_annotation_errors_total"); n != 1 {
		t.Errorf("ewgw_discovery_annotation_errors_total %v, want 1", n)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "service="+badKey.String()) || !strings.Contains(logs, `unknown mode \"fastest\"`) {
		t.Errorf("no warning naming the service and the error:\n%s", logs)
	}

	// An update that leaves the annotations alone is not reported again.
	bad.Labels = map[string]string{"touched": "yes"}
	bad = updateService(t, kc, bad)
	createService(t, kc, newService(ns, "marker", nil, svcPort("", 443)))
	r.waitService(t, model.ServiceKey{Namespace: ns, Name: "marker"}, "present", func(route.Service) bool { return true })
	if n := metric(t, r.reg, "ewgw_discovery_annotation_errors_total"); n != 1 {
		t.Errorf("after an unrelated update: ewgw_discovery_annotation_errors_total %v, want 1", n)
	}

	bad.Annotations[route.AnnotationPolicy] = "active-active"
	updateService(t, kc, bad)
	r.waitService(t, badKey, "the fixed policy", func(s route.Service) bool {
		return s.Policy != nil && s.Policy.Mode == route.ActiveActive
	})
}
