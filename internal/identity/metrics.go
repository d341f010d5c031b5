package identity

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a peer is refused, the "reason" label of
// ewgw_identity_peer_rejections_total. The set is closed.
const (
	reasonNoSPIFFEID      = "no_spiffe_id"     // no certificate, or no valid SPIFFE ID URI SAN
	reasonUntrustedDomain = "untrusted_domain" // no bundle for, or no policy naming, the peer's trust domain
	reasonBadChain        = "bad_chain"        // the chain does not verify to the domain's bundle, or a CA in it is not the domain's own (checkIssuers)
	reasonIDNotAllowed    = "id_not_allowed"   // trust domain known, ID not allowed
)

type metrics struct {
	rotations  prometheus.Counter
	failures   prometheus.Counter
	rejections *prometheus.CounterVec // reason
	federated  prometheus.Counter
}

// newMetrics registers the identity metrics on reg. expiry reports the
// current expiries; now is the injected clock. Both are read at scrape
// time.
func newMetrics(reg prometheus.Registerer, expiry func() Expiry, now func() time.Time) *metrics {
	m := &metrics{
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_identity_rotations_total",
			Help: "Times new identity material (SVID or trust bundles) was taken into use after the first load.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_identity_reload_failures_total",
			Help: "Changed identity files that could not be used, or SVIDs the CA source failed to issue; the last good material stays in use.",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_identity_peer_rejections_total",
			Help: "Peers refused during a TLS handshake, by reason (no_spiffe_id, untrusted_domain, bad_chain, id_not_allowed).",
		}, []string{"reason"}),
		federated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_identity_federated_bundles_total",
			Help: "Trust bundles peers announced for their own trust domains that changed the bundle in use (federation).",
		}),
	}
	for _, r := range []string{reasonNoSPIFFEID, reasonUntrustedDomain, reasonBadChain, reasonIDNotAllowed} {
		m.rejections.WithLabelValues(r)
	}
	reg.MustRegister(m.rotations, m.failures, m.rejections, m.federated, expiryCollector{expiry, now})
	return m
}

var (
	svidExpiryDesc = prometheus.NewDesc("ewgw_identity_svid_expiry_seconds",
		"Seconds until the current SVID expires (negative once expired).", nil, nil)
	caExpiryDesc = prometheus.NewDesc("ewgw_identity_ca_expiry_seconds",
		"Seconds until the CA the gateway issues its SVIDs from expires, the earliest expiry in its chain; only with the ca identity source.", nil, nil)
	bundleExpiryDesc = prometheus.NewDesc("ewgw_identity_bundle_expiry_seconds",
		"Seconds until the first root in a trust domain's bundle expires, by trust domain (those configured, bounded).", []string{"trust_domain"}, nil)
)

// expiryCollector reports the expiry gauges, computed at scrape time: the
// bundles and the CA change without the metrics being told.
type expiryCollector struct {
	expiry func() Expiry
	now    func() time.Time
}

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- svidExpiryDesc
	ch <- caExpiryDesc
	ch <- bundleExpiryDesc
}

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	e, now := c.expiry(), c.now()
	left := func(t time.Time) float64 { return t.Sub(now).Seconds() }
	ch <- prometheus.MustNewConstMetric(svidExpiryDesc, prometheus.GaugeValue, left(e.SVID))
	if !e.CA.IsZero() {
		ch <- prometheus.MustNewConstMetric(caExpiryDesc, prometheus.GaugeValue, left(e.CA))
	}
	for _, b := range e.Bundles {
		ch <- prometheus.MustNewConstMetric(bundleExpiryDesc, prometheus.GaugeValue, left(b.NotAfter), b.TrustDomain)
	}
}
