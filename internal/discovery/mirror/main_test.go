package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/discovery/kubetest"
	"github.com/ewgw/ewgw/internal/model"
)

// One apiserver for the package, started by the first test that needs it;
// each test works in namespaces of its own.
var (
	cluster kubetest.Lazy
	nsSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testCluster returns the package's apiserver, starting it on first use.
func testCluster(t *testing.T) *kubetest.Cluster { return cluster.Get(t) }

func adminClient(t *testing.T) *kubeclient.Set {
	t.Helper()
	cs, err := kubeclient.New(testCluster(t).Admin())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// nsName returns a fresh namespace name for this test; create says
// whether to create it.
func nsName(t *testing.T, cs *kubeclient.Set, create bool) string {
	t.Helper()
	base := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(base) > 40 {
		base = base[:40]
	}
	ns := fmt.Sprintf("%s-%d", strings.Trim(base, "-"), nsSeq.Add(1))
	if create {
		if err := ensureNamespace(t, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// testLogger logs at Debug into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs m until the test ends.
func start(t *testing.T, m *Mirror) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitSettled waits until m has reconciled every mirror named by its
// latest Set.
func waitSettled(t *testing.T, m *Mirror) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		m.mu.Lock()
		done, ch := m.working && len(m.pending) == 0, m.settled
		m.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("mirror did not settle")
		}
	}
}

// objects is what a namespace holds that the tests look at.
type objects struct {
	services map[string]corev1.Service
	slices   []discoveryv1.EndpointSlice
}

func list(t *testing.T, cs *kubeclient.Set, ns string) objects {
	t.Helper()
	svcs, err := cs.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sl, err := cs.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := objects{services: map[string]corev1.Service{}, slices: sl.Items}
	for _, s := range svcs.Items {
		o.services[s.Name] = s
	}
	return o
}

// waitFor watches the Services and EndpointSlices of ns through informers
// of its own and returns once cond holds for them, failing after a
// deadline. cond returns "" when satisfied, else what is still missing.
// (A bare watch without a resource version would wait for the apiserver's
// watch cache to prove itself fresh, which etcd 3.4 cannot help with: up to
// 3 s each.)
func waitFor(t *testing.T, cs *kubeclient.Set, ns string, cond func(objects) string) objects {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	svcAPI, sliceAPI := cs.CoreV1().Services(ns), cs.DiscoveryV1().EndpointSlices(ns)
	svcs := kubeclient.Informer(&corev1.Service{}, nil, "", svcAPI.List, svcAPI.Watch)
	sls := kubeclient.Informer(&discoveryv1.EndpointSlice{}, nil, "", sliceAPI.List, sliceAPI.Watch)
	ev := make(chan struct{}, 1)
	for _, inf := range []cache.SharedIndexInformer{svcs, sls} {
		if _, err := inf.AddEventHandler(poker(ev)); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), svcs.HasSynced, sls.HasSynced) {
		t.Fatalf("namespace %s: informers did not sync", ns)
	}
	for {
		o := objects{services: map[string]corev1.Service{}}
		for _, obj := range svcs.GetStore().List() {
			s := obj.(*corev1.Service)
			o.services[s.Name] = *s
		}
		for _, obj := range sls.GetStore().List() {
			o.slices = append(o.slices, *obj.(*discoveryv1.EndpointSlice))
		}
		missing := cond(o)
		if missing == "" {
			return o
		}
		select {
		case <-ev:
		case <-ctx.Done():
			t.Fatalf("namespace %s: %s", ns, missing)
		}
	}
}

// poker signals ev, without blocking, on every event.
func poker(ev chan<- struct{}) cache.ResourceEventHandler {
	poke := func(any) {
		select {
		case ev <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}
}

// waitCache waits until cond holds for m's caches, re-checking on every
// event of m's informers.
func waitCache(t *testing.T, m *Mirror, what string, cond func() bool) {
	t.Helper()
	ev := make(chan struct{}, 1)
	for _, inf := range []cache.SharedIndexInformer{m.services, m.slices} {
		reg, err := inf.AddEventHandler(poker(ev))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = inf.RemoveEventHandler(reg) }()
	}
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-ev:
		case <-deadline:
			t.Fatalf("cache: %s", what)
		}
	}
}

// export is an export of namespace/name with ports, as Set takes it.
func export(namespace, name string, ports ...uint16) model.Export {
	e := model.Export{Service: model.ServiceKey{Namespace: namespace, Name: name}}
	for _, p := range ports {
		e.Ports = append(e.Ports, model.ExportPort{Port: p, Ready: 1})
	}
	return e
}
