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
	endpointsSkipped *prometheus.CounterVec // reason
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
			Help: "Service and ServiceExport annotations that did not parse: a bad policy keeps the default policy, a bad export-to exports to no one.",
		}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_discovery_watch_errors_total",
			Help: "Failed Kubernetes lists and watches, by resource (services, endpointslices, serviceexports); normal watch closes are not counted.",
		}, []string{"resource"}),
		endpointsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_discovery_endpoints_skipped_total",
			Help: "EndpointSlice endpoints never dialled, by reason (loopback, link_local, unspecified, multicast, outside_cidrs), counted at each slice update.",
		}, []string{"reason"}),
	}
	for _, r := range []string{skipLoopback, skipLinkLocal, skipUnspecified, skipMulticast, skipOutsideCIDR} {
		m.endpointsSkipped.WithLabelValues(r)
	}
	for _, r := range []string{resServices, resEndpointSlices, resServiceExports} {
		m.watchErrors.WithLabelValues(r)
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.updates, m.services, m.endpoints, m.rebuild, m.annotationErrors, m.watchErrors, m.endpointsSkipped} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
