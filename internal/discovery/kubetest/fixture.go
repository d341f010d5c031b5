package kubetest

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
)

// Backend is a service as a cluster would register it: a Service and the
// EndpointSlice its controller would write, for tests and the e2e suite,
// which run no controllers.
type Backend struct {
	Namespace, Name string
	Port            uint16
	// Endpoints are the ready endpoints; empty scales the service to zero.
	Endpoints []netip.AddrPort
	// Annotations on the Service, e.g. ewgw.io/export or a policy.
	Annotations map[string]string
}

// GatewayRules are the permissions a gateway with import enabled needs.
var GatewayRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"list", "watch"}},
}

// Client returns an admin clientset.
func (c *Cluster) Client() (*kubeclient.Set, error) { return kubeclient.New(c.Admin()) }

// PutBackend creates or updates b's namespace, Service and EndpointSlice.
func (c *Cluster) PutBackend(ctx context.Context, b Backend) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	if err := EnsureNamespace(ctx, cs, b.Namespace); err != nil {
		return err
	}
	portName := "tls"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Name, Annotations: b.Annotations},
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: portName, Port: int32(b.Port), Protocol: corev1.ProtocolTCP}},
		},
	}
	svcs := cs.CoreV1().Services(b.Namespace)
	cur, err := svcs.Get(ctx, b.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = svcs.Create(ctx, svc, metav1.CreateOptions{})
	case err == nil:
		cur.Annotations = b.Annotations
		cur.Spec.Ports = svc.Spec.Ports
		_, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", b.Namespace, b.Name, err)
	}
	// One slice holds one port: the test backends behind a service share
	// theirs.
	for _, ep := range b.Endpoints {
		if ep.Port() != b.Endpoints[0].Port() {
			return fmt.Errorf("backend %s/%s: endpoints on different ports", b.Namespace, b.Name)
		}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Name + "-test",
			Labels: map[string]string{discoveryv1.LabelServiceName: b.Name, discoveryv1.LabelManagedBy: "kubetest"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	ready, proto := true, corev1.ProtocolTCP
	for _, ep := range b.Endpoints {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{ep.Addr().String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	if len(b.Endpoints) > 0 {
		port := int32(b.Endpoints[0].Port())
		slice.Ports = []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}}
	}
	slices := cs.DiscoveryV1().EndpointSlices(b.Namespace)
	curSlice, err := slices.Get(ctx, slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
	case err == nil:
		curSlice.Endpoints, curSlice.Ports = slice.Endpoints, slice.Ports
		_, err = slices.Update(ctx, curSlice, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", b.Namespace, slice.Name, err)
	}
	return nil
}

// GatewayKubeconfig creates ServiceAccount ns/name bound to a ClusterRole
// with rules (GatewayRules when nil) and writes a kubeconfig carrying its
// token to path: the gateway then runs with exactly that RBAC.
func (c *Cluster) GatewayKubeconfig(ctx context.Context, path, ns, name string, rules []rbacv1.PolicyRule) error {
	if rules == nil {
		rules = GatewayRules
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name}, Rules: rules}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	token, err := c.ServiceAccountToken(ctx, ns, name)
	if err != nil {
		return err
	}
	return c.Kubeconfig(path, token)
}
