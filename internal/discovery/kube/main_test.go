package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	mcsclientset "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/discovery/kubetest"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// One apiserver for the package, started by the first test that needs it
// (so the unit tests run without one); each test works in namespaces of its
// own.
var lazy kubetest.Lazy

// cluster is the package's apiserver once needCluster started it.
var cluster *kubetest.Cluster

func TestMain(m *testing.M) {
	code := m.Run()
	lazy.Stop()
	if code == 0 {
		// Idle keep-alive connections of the clients outlive the tests.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needCluster starts the package's apiserver on first use; -short skips
// the tests that need it.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a kube-apiserver (not with -short)")
	}
	cluster = lazy.Get(t)
}

// adminClients returns cluster-admin clients.
func adminClients(t *testing.T) (*kubeclient.Set, mcsclientset.Interface) {
	t.Helper()
	needCluster(t)
	kc, mcs, err := NewClients(cluster.Admin())
	if err != nil {
		t.Fatal(err)
	}
	return kc, mcs
}

var crdOnce = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return cluster.InstallServiceExportCRD(ctx)
})

// needCRD installs the ServiceExport CRD once for the package.
func needCRD(t *testing.T) {
	t.Helper()
	needCluster(t)
	if err := crdOnce(); err != nil {
		t.Fatal(err)
	}
}

// newNamespace creates a namespace named after the test.
func newNamespace(t *testing.T, kc *kubeclient.Set) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = strings.TrimRight(name[:min(len(name), 50)], "-") + "-" + hex.EncodeToString(b)
	if err := kubetest.EnsureNamespace(t.Context(), kc, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// snapshot is one report of the source and when it came.
type snapshot struct {
	at   time.Time
	svcs []route.Service
}

// recorder is a Config.Update that keeps every snapshot, for tests to wait
// on.
type recorder struct {
	mu     sync.Mutex
	snaps  []snapshot
	next   int           // the first snapshot the next wait looks at
	notify chan struct{} // cap 1
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) update(svcs []route.Service) {
	r.mu.Lock()
	r.snaps = append(r.snaps, snapshot{at: time.Now(), svcs: svcs})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// waitTimeout is generous: the race detector on two cores is slow.
const waitTimeout = 30 * time.Second

// wait returns the first snapshot, from the one the last wait returned on,
// for which ok holds. It fails the test after waitTimeout.
func (r *recorder) wait(t *testing.T, what string, ok func([]route.Service) bool) snapshot {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := r.next; i < len(r.snaps); i++ {
			if ok(r.snaps[i].svcs) {
				r.next = i
				s := r.snaps[i]
				r.mu.Unlock()
				return s
			}
		}
		var last []route.Service
		if n := len(r.snaps); n > 0 {
			last = r.snaps[n-1].svcs
			r.next = n - 1
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("no snapshot with %s within %s; last: %s", what, waitTimeout, format(last))
		}
	}
}

// waitService waits until the service key is in a snapshot and ok holds
// for it, and returns it and when the snapshot came.
func (r *recorder) waitService(t *testing.T, key model.ServiceKey, what string, ok func(route.Service) bool) (route.Service, time.Time) {
	t.Helper()
	var found route.Service
	s := r.wait(t, key.String()+" "+what, func(svcs []route.Service) bool {
		svc, in := find(svcs, key)
		found = svc
		return in && ok(svc)
	})
	return found, s.at
}

// waitGone waits until the service key is in no snapshot.
func (r *recorder) waitGone(t *testing.T, key model.ServiceKey) time.Time {
	t.Helper()
	return r.wait(t, key.String()+" gone", func(svcs []route.Service) bool {
		_, in := find(svcs, key)
		return !in
	}).at
}

func find(svcs []route.Service, key model.ServiceKey) (route.Service, bool) {
	for _, s := range svcs {
		if s.Key == key {
			return s, true
		}
	}
	return route.Service{}, false
}

func format(svcs []route.Service) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "\n  %s exported=%v policy=%+v ports=%v", s.Key, s.Exported, s.Policy, s.Ports)
	}
	return b.String()
}

// endpoints returns the endpoints of svc's port as strings.
func endpoints(svc route.Service, port uint16) []string {
	for _, p := range svc.Ports {
		if p.Port == port {
			out := make([]string, len(p.Endpoints))
			for i, e := range p.Endpoints {
				out[i] = e.String()
			}
			return out
		}
	}
	return nil
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// running is a started source and what it reports.
type running struct {
	*recorder
	src  *Source
	reg  *prometheus.Registry
	logs *syncBuffer
}

// startSource runs a source with cfg (Update, Logger and Registerer set
// here) until the test ends, and waits for its first snapshot.
func startSource(t *testing.T, cfg Config) *running {
	t.Helper()
	r := &running{recorder: newRecorder(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	cfg.Update = r.update
	cfg.Registerer = r.reg
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.src = src
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("source logs:\n%s", r.logs)
		}
	})
	r.wait(t, "the first snapshot", func([]route.Service) bool { return true })
	select {
	case <-src.syncedC:
	case <-time.After(10 * time.Second):
	}
	if !src.Synced() {
		t.Fatal("first snapshot reported but Synced is false")
	}
	return r
}

// metric returns the value of the counter or gauge name (summed over its
// labels) in reg.
func metric(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
