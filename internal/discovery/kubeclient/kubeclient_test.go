package kubeclient

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
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
