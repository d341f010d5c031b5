package kube

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

func mustAudience(t *testing.T, s string) audience.Audience {
	t.Helper()
	a, err := audience.ParseList(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEndpointReason: the ranges never dialled, and the optional allowed
// CIDRs.
func TestEndpointReason(t *testing.T) {
	pods := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00::/64")}
	for _, tc := range []struct {
		addr    string
		allowed []netip.Prefix
		want    string
	}{
		{"10.0.0.1", nil, ""},
		{"127.0.0.1", nil, skipLoopback},
		{"127.8.9.10", pods, skipLoopback},
		{"::1", nil, skipLoopback},
		{"169.254.169.254", nil, skipLinkLocal},
		{"fe80::1", nil, skipLinkLocal},
		{"0.0.0.0", nil, skipUnspecified},
		{"::", nil, skipUnspecified},
		{"224.0.0.251", nil, skipMulticast},
		{"255.255.255.255", nil, skipMulticast},
		{"ff02::1", nil, skipMulticast},
		{"10.244.3.4", pods, ""},
		{"fd00::5", pods, ""},
		{"10.0.0.1", pods, skipOutsideCIDR},
		{"fd00:1::5", pods, skipOutsideCIDR},
	} {
		if got := endpointReason(netip.MustParseAddr(tc.addr).Unmap(), tc.allowed); got != tc.want {
			t.Errorf("endpointReason(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

const (
	v4 = discoveryv1.AddressTypeIPv4
	v6 = discoveryv1.AddressTypeIPv6
)

// toRoute runs the whole conversion of one service: edge converters, then
// convert. exportCR holds the annotations of its ServiceExport, nil for
// none. ok is false when the service is not routed.
func toRoute(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, exportCR map[string]string) (rs route.Service, ok bool, err error) {
	s, ok, err := serviceFrom(svc)
	if !ok {
		return route.Service{}, false, err
	}
	key := keyOf(svc)
	var conv []*slice
	for _, es := range eps {
		if k, sl, ok := sliceFrom(es, nil); ok && k == key {
			conv = append(conv, &sl)
		}
	}
	var export *exportTo
	if exportCR != nil {
		to, exportErr := parseExportTo(exportCR)
		export, err = &to, errors.Join(err, exportErr)
	}
	return convert(key, &s, conv, export), true, err
}

func aps(s ...string) []netip.AddrPort {
	if len(s) == 0 {
		return nil
	}
	out := make([]netip.AddrPort, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddrPort(a)
	}
	return out
}

func TestConvert(t *testing.T) {
	key := model.ServiceKey{Namespace: "ns", Name: "web"}
	one := func(eps ...string) []route.Port { return []route.Port{{Port: 443, Endpoints: aps(eps...)}} }
	web := newService("ns", "web", nil, svcPort("", 443))
	unnamed := slicePorts("", 8443)
	tests := []struct {
		name     string
		svc      *corev1.Service
		slices   []*discoveryv1.EndpointSlice
		exportCR map[string]string
		want     route.Service
		skipped  bool
		badAnn   bool
	}{{
		name:   "ready endpoints sorted, target port from the slice",
		svc:    web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed, ready("10.0.0.9"), ready("10.0.0.10"), ready("10.0.0.2"))},
		want:   route.Service{Key: key, Ports: one("10.0.0.2:8443", "10.0.0.9:8443", "10.0.0.10:8443")},
	}, {
		name:   "not ready left out",
		svc:    web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed, ready("10.0.0.1"), notReady("10.0.0.2"), draining("10.0.0.3"))},
		want:   route.Service{Key: key, Ports: one("10.0.0.1:8443")},
	}, {
		name:   "serving and terminating when none is ready",
		svc:    web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed, notReady("10.0.0.2"), draining("10.0.0.3"), draining("10.0.0.4"))},
		want:   route.Service{Key: key, Ports: one("10.0.0.3:8443", "10.0.0.4:8443")},
	}, {
		name: "terminating but not serving never routes",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed, discoveryv1.Endpoint{
			Addresses: []string{"10.0.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(true)},
		})},
		want: route.Service{Key: key, Ports: one()},
	}, {
		name: "explicitly ready, serving nil",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed, discoveryv1.Endpoint{
			Addresses: []string{"10.0.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})},
		want: route.Service{Key: key, Ports: one("10.0.0.6:8443")},
	}, {
		name: "no slices: the service stays with empty ports",
		svc:  newService("ns", "web", nil, svcPort("http", 80), svcPort("https", 443)),
		want: route.Service{Key: key, Ports: []route.Port{{Port: 80}, {Port: 443}}},
	}, {
		name:   "empty slice (scaled to zero)",
		svc:    web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed)},
		want:   route.Service{Key: key, Ports: one()},
	}, {
		name: "ports matched by name, in service order",
		svc:  newService("ns", "web", nil, svcPort("https", 443), svcPort("grpc", 90)),
		slices: []*discoveryv1.EndpointSlice{
			newSlice("ns", "web-1", "web", v4, slicePorts("grpc", 9090, "https", 8443), ready("10.0.0.1")),
		},
		want: route.Service{Key: key, Ports: []route.Port{
			{Port: 443, Endpoints: aps("10.0.0.1:8443")},
			{Port: 90, Endpoints: aps("10.0.0.1:9090")},
		}},
	}, {
		name:   "slice port of another name does not match",
		svc:    newService("ns", "web", nil, svcPort("https", 443)),
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, slicePorts("web", 8443), ready("10.0.0.1"))},
		want:   route.Service{Key: key, Ports: []route.Port{{Port: 443}}},
	}, {
		name: "slice port name nil matches an unnamed service port",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4,
			[]discoveryv1.EndpointPort{{Port: ptr(int32(8443))}}, ready("10.0.0.1"))},
		want: route.Service{Key: key, Ports: one("10.0.0.1:8443")},
	}, {
		name: "slice ports without a number or not TCP are ignored",
		svc:  newService("ns", "web", nil, svcPort("dns", 53), corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}),
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, []discoveryv1.EndpointPort{
			{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr(int32(5353))},
			{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolTCP)},
		}, ready("10.0.0.1"))},
		want: route.Service{Key: key, Ports: []route.Port{{Port: 53}}},
	}, {
		name: "IPv4 and IPv6 slices, an address in two slices listed once",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{
			newSlice("ns", "web-1", "web", v4, unnamed, ready("10.0.0.1"), ready("10.0.0.2")),
			newSlice("ns", "web-2", "web", v4, unnamed, ready("10.0.0.2"), ready("10.0.0.3")),
			newSlice("ns", "web-3", "web", v6, unnamed, ready("fd00::2"), ready("fd00::1")),
		},
		want: route.Service{Key: key, Ports: one("10.0.0.1:8443", "10.0.0.2:8443", "10.0.0.3:8443", "[fd00::1]:8443", "[fd00::2]:8443")},
	}, {
		name: "an address ready in one slice and not in another is ready",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{
			newSlice("ns", "web-1", "web", v4, unnamed, notReady("10.0.0.1")),
			newSlice("ns", "web-2", "web", v4, unnamed, ready("10.0.0.1")),
		},
		want: route.Service{Key: key, Ports: one("10.0.0.1:8443")},
	}, {
		name: "first address of an endpoint only",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed,
			discoveryv1.Endpoint{Addresses: []string{"10.0.0.1", "10.0.0.99"}})},
		want: route.Service{Key: key, Ports: one("10.0.0.1:8443")},
	}, {
		name: "FQDN slices and slices of other services are ignored",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{
			newSlice("ns", "web-1", "web", discoveryv1.AddressTypeFQDN, unnamed, ready("db.example.com")),
			newSlice("ns", "api-1", "api", v4, unnamed, ready("10.0.0.1")),
			newSlice("other", "web-1", "web", v4, unnamed, ready("10.0.0.2")),
		},
		want: route.Service{Key: key, Ports: one()},
	}, {
		name:    "ExternalName skipped",
		svc:     &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com", Ports: []corev1.ServicePort{svcPort("", 443)}}},
		skipped: true,
	}, {
		name:    "no TCP port skipped",
		svc:     newService("ns", "web", nil, corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP}),
		skipped: true,
	}, {
		name:    "headless without ports skipped",
		svc:     &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}},
		skipped: true,
	}, {
		name: "import mirror skipped",
		svc: func() *corev1.Service {
			s := newService("ns", "web", nil, svcPort("tcp-443", 443))
			s.Labels = map[string]string{labelManagedBy: managedByEwgw, labelMirrorOf: "web"}
			return s
		}(),
		skipped: true,
	}, {
		name: "a mirror-of label alone is not a mirror",
		svc: func() *corev1.Service {
			s := newService("ns", "web", nil, svcPort("", 443))
			s.Labels = map[string]string{labelMirrorOf: "web"}
			return s
		}(),
		want: route.Service{Key: key, Ports: one()},
	}, {
		name: "protocol unset means TCP",
		svc:  newService("ns", "web", nil, corev1.ServicePort{Port: 443}),
		want: route.Service{Key: key, Ports: one()},
	}, {
		name: "exported by annotation",
		svc:  newService("ns", "web", map[string]string{AnnotationExport: "true"}, svcPort("", 443)),
		want: route.Service{Key: key, Ports: one(), Exported: true},
	}, {
		name: "export annotation other than true",
		svc:  newService("ns", "web", map[string]string{AnnotationExport: "yes"}, svcPort("", 443)),
		want: route.Service{Key: key, Ports: one()},
	}, {
		name:     "exported by ServiceExport",
		svc:      web,
		exportCR: map[string]string{},
		want:     route.Service{Key: key, Ports: one(), Exported: true},
	}, {
		name:     "audience on the ServiceExport wins",
		svc:      newService("ns", "web", map[string]string{audience.Annotation: "cluster-c"}, svcPort("", 443)),
		exportCR: map[string]string{audience.Annotation: "cluster-b, spiffe://b.example"},
		want:     route.Service{Key: key, Ports: one(), Exported: true, Audience: mustAudience(t, "cluster-b,spiffe://b.example")},
	}, {
		name: "audience on the Service",
		svc:  newService("ns", "web", map[string]string{AnnotationExport: "true", audience.Annotation: "cluster-b"}, svcPort("", 443)),
		want: route.Service{Key: key, Ports: one(), Exported: true, Audience: mustAudience(t, "cluster-b")},
	}, {
		name:     "bad audience: not exported",
		svc:      web,
		exportCR: map[string]string{audience.Annotation: "Cluster B"},
		want:     route.Service{Key: key, Ports: one()},
		badAnn:   true,
	}, {
		name:   "bad audience on the Service: not exported",
		svc:    newService("ns", "web", map[string]string{AnnotationExport: "true", audience.Annotation: "https://x"}, svcPort("", 443)),
		want:   route.Service{Key: key, Ports: one()},
		badAnn: true,
	}, {
		name: "forbidden endpoint addresses are skipped",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v4, unnamed,
			ready("127.0.0.1"), ready("169.254.169.254"), ready("0.0.0.0"), ready("224.0.0.1"), ready("10.0.0.1"))},
		want: route.Service{Key: key, Ports: one("10.0.0.1:8443")},
	}, {
		name: "forbidden IPv6 endpoint addresses are skipped",
		svc:  web,
		slices: []*discoveryv1.EndpointSlice{newSlice("ns", "web-1", "web", v6, unnamed,
			ready("::1"), ready("fe80::1"), ready("::"), ready("ff02::1"), ready("fd00::1"), ready("::ffff:127.0.0.1"))},
		want: route.Service{Key: key, Ports: one("[fd00::1]:8443")},
	}, {
		name: "policy annotations",
		svc: newService("ns", "web", map[string]string{
			route.AnnotationPolicy: "primary", route.AnnotationPrimary: "east, west",
		}, svcPort("", 443)),
		want: route.Service{Key: key, Ports: one(), Policy: &route.Policy{Mode: route.Primary, Clusters: []string{"east", "west"}}},
	}, {
		name:   "bad policy annotation: default policy",
		svc:    newService("ns", "web", map[string]string{route.AnnotationPolicy: "bogus", AnnotationExport: "true"}, svcPort("", 443)),
		want:   route.Service{Key: key, Ports: one(), Exported: true},
		badAnn: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := toRoute(tt.svc, tt.slices, tt.exportCR)
			if (err != nil) != tt.badAnn {
				t.Fatalf("annotation error %v, want error: %v", err, tt.badAnn)
			}
			if ok == tt.skipped {
				t.Fatalf("routed %v, want %v", ok, !tt.skipped)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// The informer transform must keep everything the conversion reads.
			svc := tt.svc.DeepCopy()
			if svc.Labels == nil {
				svc.Labels = map[string]string{}
			}
			svc.Labels["app"] = "web"
			svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
			_, _ = slim(svc)
			var eps []*discoveryv1.EndpointSlice
			for _, es := range tt.slices {
				es = es.DeepCopy()
				_, _ = slim(es)
				_, _ = slim(es) // idempotent
				eps = append(eps, es)
			}
			if slim, _, _ := toRoute(svc, eps, tt.exportCR); !reflect.DeepEqual(slim, got) {
				t.Errorf("after slim: %+v\nbefore:     %+v", slim, got)
			}
		})
	}
}

func TestSlim(t *testing.T) {
	svc := newService("ns", "web", map[string]string{
		AnnotationExport: "true", "kubectl.kubernetes.io/last-applied-configuration": "{...}",
	}, svcPort("", 443))
	svc.Labels = map[string]string{"app": "web"}
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	svc.Spec.Selector = map[string]string{"app": "web"}
	svc.Spec.ClusterIPs = []string{"10.96.0.10"}
	_, _ = slim(svc)
	want := newService("ns", "web", map[string]string{AnnotationExport: "true"}, svcPort("", 443))
	if !reflect.DeepEqual(svc, want) {
		t.Errorf("slim service:\n got %+v\nwant %+v", svc, want)
	}

	es := newSlice("ns", "web-1", "web", v4, slicePorts("", 8443), discoveryv1.Endpoint{
		Addresses: []string{"10.0.0.1", "10.0.0.2"}, NodeName: ptr("node-1"), Zone: ptr("a"),
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-0"},
	})
	_, _ = slim(es)
	want2 := newSlice("ns", "web-1", "web", v4, slicePorts("", 8443), ready("10.0.0.1"))
	delete(want2.Labels, discoveryv1.LabelManagedBy)
	if !reflect.DeepEqual(es, want2) {
		t.Errorf("slim slice:\n got %+v\nwant %+v", es, want2)
	}
}

func TestStateRebuild(t *testing.T) {
	st := newState()
	key := model.ServiceKey{Namespace: "ns", Name: "web"}
	snap, changed := st.rebuild(true)
	if !changed || len(snap) != 0 {
		t.Fatalf("first forced rebuild: %v, %v", snap, changed)
	}
	st.setService(key, &service{ports: []namedPort{{port: 443}}})
	st.setSlice("web-1", model.ServiceKey{}, key, &slice{ports: []namedPort{{port: 8443}}, endpoints: []endpoint{{addr: netip.MustParseAddr("10.0.0.1"), ready: true}}})
	st.setService(model.ServiceKey{Namespace: "a", Name: "z"}, &service{ports: []namedPort{{port: 80}}})
	snap, changed = st.rebuild(false)
	if !changed || len(snap) != 2 || snap[0].Key.Namespace != "a" || !slices.Equal(snap[1].Ports[0].Endpoints, aps("10.0.0.1:8443")) {
		t.Fatalf("after adds: %+v, %v", snap, changed)
	}
	// The same content again is no change.
	st.setService(key, &service{ports: []namedPort{{port: 443}}})
	if snap, changed = st.rebuild(false); changed {
		t.Fatalf("identical service reported: %+v", snap)
	}
	// A slice moving to another service leaves the first.
	other := model.ServiceKey{Namespace: "ns", Name: "other"}
	st.setSlice("web-1", key, other, &slice{})
	if snap, changed = st.rebuild(false); !changed || snap[1].Ports[0].Endpoints != nil {
		t.Fatalf("after the slice moved: %+v, %v", snap, changed)
	}
	st.setService(key, nil)
	if snap, changed = st.rebuild(false); !changed || len(snap) != 1 {
		t.Fatalf("after delete: %+v, %v", snap, changed)
	}
}
