package kube

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Builders of API objects, shared by the unit and apiserver tests.

func newService(ns, name string, ann map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func svcPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func newSlice(ns, name, svc string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "ewgw-test"},
		},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// slicePorts pairs names and numbers: slicePorts("http", 8080, "grpc", 9090).
func slicePorts(nameAndPort ...any) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for i := 0; i < len(nameAndPort); i += 2 {
		out = append(out, discoveryv1.EndpointPort{
			Name:     ptr(nameAndPort[i].(string)),
			Port:     ptr(int32(nameAndPort[i+1].(int))),
			Protocol: ptr(corev1.ProtocolTCP),
		})
	}
	return out
}

// ready is an endpoint whose conditions are all unset: ready, by the API's
// defaults.
func ready(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}}
}

// notReady is an endpoint neither ready nor serving (a starting pod).
func notReady(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false)}}
}

// draining is an endpoint serving and terminating, hence not ready.
func draining(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}}
}

func ptr[T any](v T) *T { return &v }
