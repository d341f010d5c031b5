package kubeclient

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The clients share one rate limiter, as the full clientset's do, so a QPS
// setting bounds the gateway's requests, not each API group's.
func TestNewSharesRateLimiter(t *testing.T) {
	s, err := New(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5, Burst: 10})
	if err != nil {
		t.Fatal(err)
	}
	rl := s.CoreV1().RESTClient().GetRateLimiter()
	if rl == nil {
		t.Fatal("core/v1 client has no rate limiter")
	}
	for name, other := range map[string]rest.Interface{
		"discovery.k8s.io/v1":          s.DiscoveryV1().RESTClient(),
		"authorization.k8s.io/v1":      s.AuthorizationV1().RESTClient(),
		"authentication.k8s.io/v1":     s.AuthenticationV1().RESTClient(),
		"rbac.authorization.k8s.io/v1": s.RbacV1().RESTClient(),
	} {
		if other.GetRateLimiter() != rl {
			t.Errorf("%s has a rate limiter of its own", name)
		}
	}
}

func TestNewRejectsQPSWithoutBurst(t *testing.T) {
	_, err := New(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5})
	if err == nil || !strings.Contains(err.Error(), "burst") {
		t.Fatalf("New = %v, want an error about the burst", err)
	}
}

// An informer built without indexers still takes one later, as client-go's
// generated informers (which start from an empty map) do.
func TestInformerWithoutIndexersTakesOneLater(t *testing.T) {
	errNoServer := errors.New("no server")
	inf := Informer(&corev1.Service{}, nil, "",
		func(context.Context, metav1.ListOptions) (*corev1.ServiceList, error) { return nil, errNoServer },
		func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, errNoServer })
	if err := inf.AddIndexers(cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}); err != nil {
		t.Fatalf("AddIndexers: %v", err)
	}
	if _, ok := inf.GetIndexer().GetIndexers()[cache.NamespaceIndex]; !ok {
		t.Fatal("the added index is missing")
	}
}
