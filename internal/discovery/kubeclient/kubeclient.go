// Package kubeclient builds the typed Kubernetes clients ewgw uses, in place
// of client-go's full clientset, and informers over them.
//
// The gateway talks to five API groups: core, discovery.k8s.io,
// authorization and authentication (its permission preflight) and RBAC (the
// tests). The full clientset, and the generated informers, which take it,
// bring clients, informers and listers for some sixty more: 280 more
// packages for every cold build to compile (race-instrumented in `make
// test`), and 18 MB more in bin/ewgw.
package kubeclient

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	authnv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1 "k8s.io/client-go/kubernetes/typed/discovery/v1"
	rbacv1 "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
)

// Set is the typed clients of one rest.Config. Its methods are named and
// typed as kubernetes.Interface's, so code written against a subset of
// that interface takes a Set.
type Set struct {
	core        *corev1.CoreV1Client
	discoveryV1 *discoveryv1.DiscoveryV1Client
	authz       *authzv1.AuthorizationV1Client
	authn       *authnv1.AuthenticationV1Client
	rbac        *rbacv1.RbacV1Client
	discovery   *discovery.DiscoveryClient
}

// New returns the clients of rc. As kubernetes.NewForConfig does, they
// share one HTTP client (one connection pool) and, when rc sets a QPS
// but no rate limiter, one token bucket.
func New(rc *rest.Config) (*Set, error) {
	c := *rc
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("kubeclient: QPS %v needs a burst above 0", c.QPS)
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	hc, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("kubeclient: %w", err)
	}
	var s Set
	if s.core, err = corev1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: core/v1: %w", err)
	}
	if s.discoveryV1, err = discoveryv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: discovery.k8s.io/v1: %w", err)
	}
	if s.authz, err = authzv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: authorization.k8s.io/v1: %w", err)
	}
	if s.authn, err = authnv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: authentication.k8s.io/v1: %w", err)
	}
	if s.rbac, err = rbacv1.NewForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: rbac.authorization.k8s.io/v1: %w", err)
	}
	if s.discovery, err = discovery.NewDiscoveryClientForConfigAndClient(&c, hc); err != nil {
		return nil, fmt.Errorf("kubeclient: discovery: %w", err)
	}
	return &s, nil
}

// CoreV1 is the core API group's client.
func (s *Set) CoreV1() corev1.CoreV1Interface { return s.core }

// DiscoveryV1 is discovery.k8s.io/v1's client (EndpointSlices).
func (s *Set) DiscoveryV1() discoveryv1.DiscoveryV1Interface { return s.discoveryV1 }

// AuthorizationV1 is authorization.k8s.io/v1's client (access reviews).
func (s *Set) AuthorizationV1() authzv1.AuthorizationV1Interface { return s.authz }

// AuthenticationV1 is authentication.k8s.io/v1's client (SelfSubjectReview).
func (s *Set) AuthenticationV1() authnv1.AuthenticationV1Interface { return s.authn }

// RbacV1 is rbac.authorization.k8s.io/v1's client.
func (s *Set) RbacV1() rbacv1.RbacV1Interface { return s.rbac }

// Discovery is the API discovery client (which groups and resources the
// apiserver serves).
func (s *Set) Discovery() discovery.DiscoveryInterfaces { return s.discovery }

// Informer returns a shared informer, without resync, over list and watch
// (a typed client's List and Watch methods), with labelSelector on both.
// It is the informer client-go's generated constructors build, with
// neither a clientset nor the generated informer packages. indexers may be
// nil; the informer still takes AddIndexers later (client-go writes into
// the map it was given, so a nil one would panic there).
func Informer[L runtime.Object](example runtime.Object, indexers cache.Indexers, labelSelector string,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = labelSelector
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = labelSelector
			return watchFn(ctx, o)
		},
	}
	if indexers == nil {
		indexers = cache.Indexers{}
	}
	return cache.NewSharedIndexInformer(lw, example, 0, indexers)
}
