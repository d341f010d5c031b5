package mirror

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
)

const gatewayPort = 15443

func newMirror(t *testing.T, cs *kubeclient.Set, replica string, addrs ...string) *Mirror {
	t.Helper()
	cfg := Config{Client: cs, Port: gatewayPort, Replica: replica, Logger: testLogger(t)}
	for _, a := range addrs {
		cfg.Addresses = append(cfg.Addresses, netip.MustParseAddr(a))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// servicePortsOf returns a Service's ports, sorted.
func servicePortsOf(s corev1.Service) []int32 {
	var ports []int32
	for _, p := range s.Spec.Ports {
		ports = append(ports, p.Port)
	}
	slices.Sort(ports)
	return ports
}

// mirrorState returns "" when ns holds the mirror Service name with exactly
// ports and exactly one slice per replica in replicas, else what differs.
func mirrorState(name string, ports []int32, replicas ...string) func(objects) string {
	return func(o objects) string {
		svc, ok := o.services[name]
		if !ok {
			return "no service " + name
		}
		if got := servicePortsOf(svc); !slices.Equal(got, ports) {
			return fmt.Sprintf("service ports %v, want %v", got, ports)
		}
		var got []string
		for _, s := range o.slices {
			if s.Labels[discoveryv1.LabelServiceName] == name {
				if len(s.Ports) != len(ports) {
					return fmt.Sprintf("slice %s has %d ports, want %d", s.Name, len(s.Ports), len(ports))
				}
				got = append(got, s.Labels[LabelReplica]+"/"+string(s.AddressType))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, replicas) {
			return fmt.Sprintf("slices %v, want %v", got, replicas)
		}
		return ""
	}
}

// empty holds when ns has no Services and no EndpointSlices.
func empty(o objects) string {
	if len(o.services) > 0 || len(o.slices) > 0 {
		return fmt.Sprintf("%d services and %d slices left", len(o.services), len(o.slices))
	}
	return ""
}

// writes sums ewgw_mirror_writes_total over its labels.
func writes(m *Mirror) float64 {
	var n float64
	for _, k := range []string{kindService, kindSlice} {
		for _, op := range []string{opCreate, opUpdate, opDelete} {
			n += testutil.ToFloat64(m.m.writes.WithLabelValues(k, op))
		}
	}
	return n
}

func TestMirrorLifecycle(t *testing.T) {
	cs := adminClient(t)
	shop := nsName(t, cs, true)
	absent := nsName(t, cs, false)
	cfg := Config{
		Client:    cs,
		Port:      gatewayPort,
		Replica:   "gw-0",
		Logger:    testLogger(t),
		PodUID:    "4c1b0a2e-0000-4000-8000-000000000001",
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.7"), netip.MustParseAddr("fd00::7")},
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Set([]model.Export{export(shop, "web", 443), export(absent, "web", 443)})
	start(t, m)

	o := waitFor(t, cs, shop, mirrorState("web-global", []int32{443}, "gw-0/IPv4", "gw-0/IPv6"))
	svc := o.services["web-global"]
	if svc.Spec.Selector != nil || svc.Spec.Type != corev1.ServiceTypeClusterIP ||
		svc.Labels[LabelManagedBy] != ManagedBy || svc.Labels[LabelMirrorOf] != "web" || svc.Spec.Ports[0].Name != "tcp-443" {
		t.Errorf("service = %+v", svc)
	}
	for _, s := range o.slices {
		want := map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "10.1.0.7", discoveryv1.AddressTypeIPv6: "fd00::7"}[s.AddressType]
		if len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != want || !*s.Endpoints[0].Conditions.Ready {
			t.Errorf("slice %s endpoints = %+v, want ready %s", s.Name, s.Endpoints, want)
		}
		if p := s.Ports[0]; *p.Name != "tcp-443" || *p.Port != gatewayPort || *p.Protocol != corev1.ProtocolTCP {
			t.Errorf("slice %s port = %s %d %s, want tcp-443 %d TCP", s.Name, *p.Name, *p.Port, *p.Protocol, gatewayPort)
		}
		if s.Labels[discoveryv1.LabelManagedBy] != SliceManager || s.Labels[LabelManagedBy] != ManagedBy {
			t.Errorf("slice %s labels = %v", s.Name, s.Labels)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Pod" || s.OwnerReferences[0].Name != "gw-0" || string(s.OwnerReferences[0].UID) != cfg.PodUID {
			t.Errorf("slice %s owners = %+v, want the pod gw-0", s.Name, s.OwnerReferences)
		}
	}

	// The absent namespace gets nothing, until it is created.
	waitSettled(t, m)
	if !m.Synced() {
		t.Error("not Synced after settling")
	}
	if got := testutil.ToFloat64(m.m.services); got != 1 {
		t.Errorf("ewgw_mirror_services = %v, want 1", got)
	}
	if o := list(t, cs, absent); len(o.services)+len(o.slices) > 0 {
		t.Fatalf("namespace %s does not exist yet but holds %d services", absent, len(o.services))
	}
	if err := ensureNamespace(t, cs, absent); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cs, absent, mirrorState("web-global", []int32{443}, "gw-0/IPv4", "gw-0/IPv6"))

	// A namespace going away takes its mirror with it. (Without a
	// namespace controller it stays Terminating, so the mirror's own
	// deletes are what empties it.)
	if err := cs.CoreV1().Namespaces().Delete(t.Context(), absent, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cs, absent, empty)
	waitSettled(t, m)
	if got := testutil.ToFloat64(m.m.services); got != 1 {
		t.Errorf("ewgw_mirror_services = %v, want 1 once %s is gone", got, absent)
	}

	// A port change updates the Service in place and the slices.
	uid := svc.UID
	m.Set([]model.Export{export(shop, "web", 443, 8443)})
	o = waitFor(t, cs, shop, mirrorState("web-global", []int32{443, 8443}, "gw-0/IPv4", "gw-0/IPv6"))
	if o.services["web-global"].UID != uid {
		t.Error("port change recreated the service")
	}

	// The export disappears everywhere: nothing is left behind.
	m.Set(nil)
	waitFor(t, cs, shop, empty)
	waitSettled(t, m)
	if got := testutil.ToFloat64(m.m.services); got != 0 {
		t.Errorf("ewgw_mirror_services = %v, want 0", got)
	}
}

// ensureNamespace creates ns, opted in to mirrors.
func ensureNamespace(t *testing.T, cs *kubeclient.Set, ns string) error {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{LabelImport: "true"},
	}}, metav1.CreateOptions{})
	return err
}

// TestReplicasAgree runs two replicas on one desired set: one Service that
// neither rewrites, one slice each. The Service stays while either replica
// still wants it.
func TestReplicasAgree(t *testing.T) {
	cs := adminClient(t)
	ns := nsName(t, cs, true)
	a := newMirror(t, cs, "gw-a", "10.1.0.1")
	b := newMirror(t, cs, "gw-b", "10.1.0.2")
	set := []model.Export{export(ns, "web", 443, 80)}
	a.Set(set)
	b.Set(set)
	start(t, a)
	start(t, b)
	o := waitFor(t, cs, ns, mirrorState("web-global", []int32{80, 443}, "gw-a/IPv4", "gw-b/IPv4"))
	waitSettled(t, a)
	waitSettled(t, b)
	if !a.Synced() || !b.Synced() {
		t.Fatal("replicas not Synced")
	}
	k := key{ns, "web-global"}
	bothSlices := func() bool { return len(a.cachedSlices(k, false)) == 1 && len(b.cachedSlices(k, false)) == 1 }
	waitCache(t, a, "each replica sees the other's slice", bothSlices)
	waitCache(t, b, "each replica sees the other's slice", bothSlices)

	// The same set again: every mirror is reconciled, nothing is written.
	wa, wb := writes(a), writes(b)
	rv := list(t, cs, ns).services["web-global"].ResourceVersion
	a.Set(set)
	b.Set(set)
	waitSettled(t, a)
	waitSettled(t, b)
	if writes(a) != wa || writes(b) != wb {
		t.Errorf("writes went from %v, %v to %v, %v on an unchanged set", wa, wb, writes(a), writes(b))
	}
	if got := list(t, cs, ns).services["web-global"].ResourceVersion; got != rv {
		t.Errorf("service resourceVersion %s -> %s on an unchanged set", rv, got)
	}

	// One replica lets go: its slice goes, the Service stays for the other.
	a.Set(nil)
	o2 := waitFor(t, cs, ns, mirrorState("web-global", []int32{80, 443}, "gw-b/IPv4"))
	waitSettled(t, a)
	if o2.services["web-global"].UID != o.services["web-global"].UID {
		t.Error("the service was recreated while replica gw-b wanted it")
	}

	// The last one lets go: nothing is left.
	b.Set(nil)
	waitFor(t, cs, ns, empty)
}

// TestUnmanagedServiceLeftAlone: a Service holding the mirror's name that
// the mirror did not create is never changed or deleted, and gets no slice.
func TestUnmanagedServiceLeftAlone(t *testing.T) {
	cs := adminClient(t)
	ns := nsName(t, cs, true)
	theirs, err := cs.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-global", Labels: map[string]string{"app": "theirs"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "theirs"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMirror(t, cs, "gw-0", "10.1.0.1")
	start(t, m)
	set := []model.Export{export(ns, "web", 443), export(ns, "api", 443)}
	for range 2 { // a second Set finds the same conflict and counts it no more
		m.Set(set)
		waitFor(t, cs, ns, mirrorState("api-global", []int32{443}, "gw-0/IPv4")) // the mirror is working
		waitSettled(t, m)
	}
	m.Set(nil)
	waitFor(t, cs, ns, func(o objects) string {
		if _, ok := o.services["api-global"]; ok || len(o.slices) > 0 {
			return "api-global not removed yet"
		}
		return ""
	})
	waitSettled(t, m)

	o := list(t, cs, ns)
	got, ok := o.services["web-global"]
	if !ok || got.ResourceVersion != theirs.ResourceVersion {
		t.Errorf("unmanaged service changed or deleted: %+v", got)
	}
	if n := testutil.ToFloat64(m.m.conflicts); n != 1 {
		t.Errorf("ewgw_mirror_conflicts_total = %v, want 1", n)
	}
}
