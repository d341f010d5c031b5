package mirror

import "github.com/prometheus/client_golang/prometheus"

// Object kinds and operations, the labels of ewgw_mirror_writes_total. The
// sets are closed.
const (
	kindService = "service"
	kindSlice   = "endpointslice"

	opCreate = "create"
	opUpdate = "update"
	opDelete = "delete"
)

type metrics struct {
	services  prometheus.Gauge
	writes    *prometheus.CounterVec // kind, op
	errors    prometheus.Counter
	conflicts prometheus.Counter
	skipped   prometheus.Counter
}

// newMetrics registers the mirror metrics on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_mirror_services",
			Help: "Mirror Services this replica keeps (desired, namespace present, no conflict).",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_mirror_writes_total",
			Help: "Successful writes to the Kubernetes API, by kind (service, endpointslice) and op (create, update, delete).",
		}, []string{"kind", "op"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_mirror_errors_total",
			Help: "Reconciliations that failed on an API error; each is retried with backoff.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_mirror_conflicts_total",
			Help: "Objects found holding a mirror's name without the managed-by label; they are left alone.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_mirror_skipped_total",
			Help: "Desired services not mirrored: <name>-<suffix> is not a valid DNS-1035 label, they have no ports, or they are past the cap on mirrors.",
		}),
	}
	for _, k := range []string{kindService, kindSlice} {
		for _, op := range []string{opCreate, opUpdate, opDelete} {
			m.writes.WithLabelValues(k, op)
		}
	}
	reg.MustRegister(m.services, m.writes, m.errors, m.conflicts, m.skipped)
	return m
}

func (m *metrics) wrote(kind, op string) { m.writes.WithLabelValues(kind, op).Inc() }
