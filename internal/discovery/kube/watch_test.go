package kube

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/route"
)

// TestWatchErrors checks the informers' watch error handler: failed lists
// and watches are logged through the injected logger and counted by
// resource; a watch the server closed normally is neither.
func TestWatchErrors(t *testing.T) {
	logs := &syncBuffer{}
	s, err := New(Config{
		Client:     &kubeclient.Set{},
		Update:     func([]route.Service) {},
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
		errors.New(`User "system:serviceaccount:ewgw:ewgw" cannot list resource "endpointslices"`))
	expired := apierrors.NewResourceExpired("too old resource version")
	s.watchError(resEndpointSlices)(t.Context(), nil, forbidden)
	s.watchError(resServices)(t.Context(), nil, expired)
	s.watchError(resServices)(t.Context(), nil, io.EOF)
	s.watchError(resServices)(t.Context(), nil, fmt.Errorf("stream: %w", io.EOF))

	for res, want := range map[string]float64{resEndpointSlices: 1, resServices: 1, resServiceExports: 0} {
		if got := testutil.ToFloat64(s.m.watchErrors.WithLabelValues(res)); got != want {
			t.Errorf("ewgw_discovery_watch_errors_total{resource=%q} %v, want %v", res, got, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "resource=endpointslices") || !strings.Contains(lines[0], "cannot list") ||
		!strings.Contains(lines[1], "level=DEBUG") || !strings.Contains(lines[1], "resource=services") {
		t.Errorf("logs:\n%s", logs)
	}
}
