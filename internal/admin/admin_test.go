package admin

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ewgw_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady atomic.Bool
	notReady.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Handler(Config{
			Gatherer: reg,
			Ready: func() error {
				if notReady.Load() {
					return errors.New("draining")
				}
				return nil
			},
		}))
	}()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		path   string
		code   int
		substr string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "draining"},
		{"/metrics", 200, "ewgw_test_total 3"},
		{"/debug/pprof/", 404, ""},
	}
	for _, tt := range tests {
		code, body := get(tt.path)
		if code != tt.code || !strings.Contains(body, tt.substr) {
			t.Errorf("GET %s = %d %q; want %d containing %q", tt.path, code, body, tt.code, tt.substr)
		}
	}
	notReady.Store(false)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("GET /readyz after ready = %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestPprofOptIn(t *testing.T) {
	h := Handler(Config{Gatherer: prometheus.NewRegistry(), Pprof: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	resp, err := http.Get("http://" + ln.Addr().String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pprof status = %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}
