package kube

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// TestDebounce drives the rebuild loop with state changes under a fake
// clock: a change after a quiet interval is reported at once, a burst is
// reported at once and then once more at the end of the interval with its
// last state, and a change that changes nothing is not reported.
func TestDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type report struct {
			at    time.Duration
			ports int
		}
		var mu sync.Mutex
		var got []report
		start := time.Now()
		s, err := New(Config{
			Client:     &kubeclient.Set{},
			Registerer: prometheus.NewRegistry(),
			Update: func(svcs []route.Service) {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				if len(svcs) > 0 {
					n = len(svcs[0].Ports)
				}
				got = append(got, report{time.Since(start), n})
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		key := model.ServiceKey{Namespace: "ns", Name: "web"}
		setPorts := func(n int) {
			svc := &service{}
			for i := range n {
				svc.ports = append(svc.ports, namedPort{port: uint16(1000 + i)})
			}
			s.st.setService(key, svc)
			s.changed()
		}
		expect := func(want ...report) {
			t.Helper()
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(got) != len(want) {
				t.Fatalf("reports %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("reports %v, want %v", got, want)
				}
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		s.rebuild(true)
		go s.loop(ctx)
		expect(report{0, 0})

		setPorts(1) // within the interval of the first snapshot: trailing edge
		expect(report{0, 0})
		time.Sleep(DefaultDebounce)
		expect(report{0, 0}, report{DefaultDebounce, 1})

		time.Sleep(time.Second) // quiet: leading edge
		setPorts(2)
		expect(report{0, 0}, report{DefaultDebounce, 1}, report{1100 * time.Millisecond, 2})

		for n := 3; n <= 6; n++ { // a burst: the last state at the end of the interval
			time.Sleep(10 * time.Millisecond)
			setPorts(n)
		}
		time.Sleep(time.Second)
		expect(report{0, 0}, report{DefaultDebounce, 1}, report{1100 * time.Millisecond, 2}, report{1200 * time.Millisecond, 6})

		setPorts(6) // no change: no report
		time.Sleep(time.Second)
		expect(report{0, 0}, report{DefaultDebounce, 1}, report{1100 * time.Millisecond, 2}, report{1200 * time.Millisecond, 6})
		if n := testutil.ToFloat64(s.m.updates); n != 4 {
			t.Errorf("ewgw_discovery_updates_total %v, want 4", n)
		}
		if n := testutil.ToFloat64(s.m.services); n != 1 {
			t.Errorf("ewgw_discovery_services %v, want 1", n)
		}
	})
}
