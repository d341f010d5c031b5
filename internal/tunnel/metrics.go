package tunnel

import "github.com/prometheus/client_golang/prometheus"

// Reasons a handshake or connection setup failed, the "reason" label of
// ewgw_tunnel_handshake_failures_total. The set is closed.
const (
	reasonNoCert         = "no_cert"         // a client presented no certificate: not a peer
	reasonALPN           = "alpn"            // a client did not offer ALPN ewgw/1 (TCP): not a peer
	reasonVerify         = "verify"          // our VerifyConnection rejected the peer
	reasonNoID           = "no_id"           // the peer certificate has no SPIFFE ID
	reasonTLS            = "tls"             // the peer rejected us, or TLS failed otherwise
	reasonTimeout        = "timeout"         // handshake or hello timed out
	reasonPeerMismatch   = "peer_mismatch"   // dialled peer's ID is not the expected one
	reasonUnknownPeer    = "unknown_peer"    // inbound ID matches no configured peer
	reasonHello          = "hello"           // control hello exchange failed
	reasonWrongTransport = "wrong_transport" // the peer dialled a transport this side does not use
	reasonOther          = "other"
)

// Results of a stream open that did not get a status: the remaining values
// of the "result" label are ErrorCode names.
const resultError = "error"

type metrics struct {
	peersUp            prometheus.Gauge
	conns              *prometheus.GaugeVec   // direction, transport
	fallbacks          *prometheus.CounterVec // reason
	upgrades           prometheus.Counter
	opened             *prometheus.CounterVec // result
	accepted           *prometheus.CounterVec // result
	handshakeFailures  *prometheus.CounterVec // reason
	reconnects         prometheus.Counter
	redial             prometheus.Histogram
	openDuration       prometheus.Histogram
	controlReceived    *prometheus.CounterVec // kind
	leaseExpirations   *prometheus.CounterVec // peer
	refusals           *prometheus.CounterVec // reason
	penalties          *prometheus.CounterVec // peer
	retries            prometheus.Counter
	openRetries        *prometheus.CounterVec // reason
	handshakesRefused  *prometheus.CounterVec // reason
	handshakesInFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		peersUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_tunnel_peers_up",
			Help: "Configured peers with at least one live, non-draining connection.",
		}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ewgw_tunnel_connections",
			Help: "Established peer connections by direction (in, out) and transport (quic, tcp).",
		}, []string{"direction", "transport"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_transport_fallbacks_total",
			Help: "Peer dials that went to TCP, by reason (quic_timeout: no QUIC handshake within the fallback delay; quic_failed: the QUIC dial failed; quic_silent: a QUIC connection heard nothing).",
		}, []string{"reason"}),
		upgrades: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_tunnel_transport_upgrades_total",
			Help: "QUIC probes that got through while a dial slot ran on TCP: new streams moved back to QUIC.",
		}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_streams_opened_total",
			Help: "Streams opened to peers by result: the peer's status code name, or error.",
		}, []string{"result"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_streams_accepted_total",
			Help: "Streams opened by peers by result: the status code name sent back.",
		}, []string{"result"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_handshake_failures_total",
			Help: "Peer connections that failed before the hello completed, by reason.",
		}, []string{"reason"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_tunnel_reconnects_total",
			Help: "Peers that came back up after being lost.",
		}),
		redial: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ewgw_tunnel_redial_duration_seconds",
			Help:    "Time from losing a peer's last connection to the next one being up.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 15),
		}),
		openDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ewgw_tunnel_stream_open_duration_seconds",
			Help:    "Time from Open to the peer's status.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
		controlReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_control_messages_received_total",
			Help: "Control-stream messages received from peers, by kind (hello, exports, delta, lease, goaway).",
		}, []string{"kind"}),
		leaseExpirations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_lease_expirations_total",
			Help: "Peer connections closed because the peer was silent for its lease, by configured peer name.",
		}, []string{"peer"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_peer_refusals_total",
			Help: "Peer connections this side closed because the peer broke a rule or went over a budget, or its identity no longer passes, by reason.",
		}, []string{"reason"}),
		penalties: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_peer_penalties_total",
			Help: "Penalties imposed on peers that broke a rule, by configured peer name: new connections from the peer are refused (peer_refusals_total{reason=\"penalised\"}) and it is not dialled until the penalty ends.",
		}, []string{"peer"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_tunnel_retries_total",
			Help: "Initial packets answered with a Retry, for the client to prove its source address, because RetryAbove handshakes were in flight.",
		}),
		openRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_stream_open_retries_total",
			Help: "Stream opens moved to another connection of the same peer before any answer, by reason (no_answer: the connection received nothing within a few RTTs; conn_lost: it closed first; going_away: it stopped taking streams, or the peer refused a stream that reached it after it drained).",
		}, []string{"reason"}),
		handshakesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_tunnel_handshakes_refused_total",
			Help: "Inbound connection attempts (Initial packets) refused before any cryptography, by reason (busy: MaxHandshakes in flight; source_busy: MaxHandshakesPerSource from one proven address; penalised: an address a penalised peer connected from).",
		}, []string{"reason"}),
		handshakesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ewgw_tunnel_handshakes_in_flight",
			Help: "Inbound handshakes begun and not yet accepted or ended.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.peersUp, m.conns, m.fallbacks, m.upgrades, m.opened, m.accepted, m.handshakeFailures,
			m.reconnects, m.redial, m.openDuration, m.controlReceived, m.leaseExpirations, m.refusals, m.penalties,
			m.retries, m.openRetries, m.handshakesRefused, m.handshakesInFlight)
	}
	return m
}

// pathCollector reports each peer's QUIC path figures at scrape time:
// what an operator looks at first when a peer is slow.
type pathCollector struct {
	peers            func() []PeerStatus
	rtt, cwnd, lossR *prometheus.Desc
}

func newPathCollector(peers func() []PeerStatus) *pathCollector {
	return &pathCollector{
		peers: peers,
		rtt: prometheus.NewDesc("ewgw_tunnel_peer_rtt_seconds",
			"Smallest smoothed round-trip time among the live connections to the peer.", []string{"peer"}, nil),
		cwnd: prometheus.NewDesc("ewgw_tunnel_peer_congestion_window_bytes",
			"This side's congestion windows towards the peer, summed over live connections.", []string{"peer"}, nil),
		lossR: prometheus.NewDesc("ewgw_tunnel_peer_packet_loss_ratio",
			"Packets declared lost over packets sent, on the live connections to the peer.", []string{"peer"}, nil),
	}
}

func (c *pathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rtt
	ch <- c.cwnd
	ch <- c.lossR
}

func (c *pathCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.peers() {
		if p.Conns == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, p.RTT.Seconds(), p.Name)
		ch <- prometheus.MustNewConstMetric(c.cwnd, prometheus.GaugeValue, float64(p.CongestionWindow), p.Name)
		ch <- prometheus.MustNewConstMetric(c.lossR, prometheus.GaugeValue, p.LossRatio(), p.Name)
	}
}
