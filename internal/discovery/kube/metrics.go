package kube

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Resources, the "resource" label of ewgw_discovery_watch_errors_total. The
// set is closed.
const (
	resServices       = "services"
	resEndpointSlices = "endpointslices"
	resServiceExports = "serviceexports"
)

type metrics struct {
	updates          prometheus.Counter
	services         prometheus.Gauge
	endpoints        prometheus.Gauge
	rebuild          prometheus.Histogram
	annotationErrors prometheus.Counter
	watchErrors      *prometheus.CounterVec // resource
}

// newMetrics registers the Kubernetes discovery metrics on reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_discovery_updates_total",
			Help: "Service snapshots reported to the gateway by Kubernetes discovery.",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_discovery_services",
			Help: "Services in the last snapshot from Kubernetes discovery.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_discovery_endpoints",
			Help: "Endpoints (per service port) in the last snapshot from Kubernetes discovery.",
		}),
		rebuild: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ewgw_discovery_rebuild_duration_seconds",
			Help:    "Time to rebuild the service snapshot after informer events.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs to 6.5s
		}),
		annotationErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_discovery_annotation_errors_total",
			Help: "Service policy annotations that did not parse; the service keeps the default policy.",
		}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_discovery_watch_errors_total",
			Help: "Failed Kubernetes lists and watches, by resource (services, endpointslices, serviceexports); normal watch closes are not counted.",
		}, []string{"resource"}),
	}
	for _, r := range []string{resServices, resEndpointSlices, resServiceExports} {
		m.watchErrors.WithLabelValues(r)
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.updates, m.services, m.endpoints, m.rebuild, m.annotationErrors, m.watchErrors} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
