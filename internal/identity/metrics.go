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
	expiry     prometheus.GaugeFunc
}

// newMetrics registers the identity metrics on reg. expiry reports the
// current SVID's NotAfter; now is the injected clock, read at scrape time.
func newMetrics(reg prometheus.Registerer, expiry func() time.Time, now func() time.Time) *metrics {
	m := &metrics{
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_identity_rotations_total",
			Help: "Times new identity material (SVID or trust bundles) was taken into use after the first load.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ewgw_identity_reload_failures_total",
			Help: "Changed identity files that could not be used; the last good material stays in use.",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ewgw_identity_peer_rejections_total",
			Help: "Peers refused during a TLS handshake, by reason (no_spiffe_id, untrusted_domain, bad_chain, id_not_allowed).",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonNoSPIFFEID, reasonUntrustedDomain, reasonBadChain, reasonIDNotAllowed} {
		m.rejections.WithLabelValues(r)
	}
	m.expiry = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ewgw_identity_svid_expiry_seconds",
		Help: "Seconds until the current SVID expires (negative once expired).",
	}, func() float64 { return expiry().Sub(now()).Seconds() })
	reg.MustRegister(m.rotations, m.failures, m.rejections, m.expiry)
	return m
}
