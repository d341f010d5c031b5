package proxy

import "github.com/prometheus/client_golang/prometheus"

// Where a connection came from, the "source" label.
const (
	sourceClient = "client" // a TCP client of this cluster
	sourcePeer   = "peer"   // a stream opened by a peer gateway
	sourcePublic = "public" // a TCP client of the opt-in public passthrough
)

// Results of a connection, the "result" label.
const (
	resultOK       = "ok"       // proxied to the end
	resultRejected = "rejected" // bad or unroutable hello; nothing dialled
	resultFailed   = "failed"   // routable, but no upstream could be reached
)

type metrics struct {
	conns     *prometheus.CounterVec // source, result, reason
	active    prometheus.Gauge
	bytes     *prometheus.CounterVec // direction
	hello     prometheus.Histogram
	dial      *prometheus.HistogramVec // result
	ejections prometheus.Counter

	remoteFailures *prometheus.CounterVec // reason

	// Children every proxied connection updates, resolved once.
	bytesUp, bytesDown prometheus.Counter
	ok                 map[string]prometheus.Counter // by source
	dialOK, dialError  prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_proxy_connections_total",
			Help: "Connections by source (client, public, peer), result (ok, rejected, failed) and reason.",
		}, []string{"source", "result", "reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_proxy_active_connections",
			Help: "Client connections being handled now.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_proxy_bytes_total",
			Help: "Bytes proxied; upstream is client to server, downstream the reverse.",
		}, []string{"direction"}),
		hello: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ewgw_proxy_hello_duration_seconds",
			Help:    "Time from accept to a complete ClientHello.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ewgw_proxy_dial_duration_seconds",
			Help:    "Time to connect to a local endpoint, by result (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"result"}),
		ejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_proxy_endpoint_ejections_total",
			Help: "Local endpoints ejected after consecutive dial failures.",
		}),
		remoteFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_proxy_remote_open_failures_total",
			Help: "Streams to peers that failed before any server byte, by reason; the next peer is tried.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.conns, m.active, m.bytes, m.hello, m.dial, m.ejections, m.remoteFailures)
	m.bytesUp, m.bytesDown = m.bytes.WithLabelValues("upstream"), m.bytes.WithLabelValues("downstream")
	m.ok = map[string]prometheus.Counter{}
	for _, s := range []string{sourceClient, sourcePublic, sourcePeer} {
		m.ok[s] = m.conns.WithLabelValues(s, resultOK, "")
	}
	m.dialOK, m.dialError = m.dial.WithLabelValues("ok"), m.dial.WithLabelValues("error")
	return m
}
