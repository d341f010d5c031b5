package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// RejectError is what a handshake's verification returns, on the verifying
// side, when it refuses the peer.
type RejectError struct {
	// Reason is the metric label: no_spiffe_id, untrusted_domain, bad_chain
	// or id_not_allowed.
	Reason string
	// PeerID is the SPIFFE ID the peer claimed; "" if none.
	PeerID string
	// Err is the underlying cause.
	Err error
}

// Error implements error.
func (e *RejectError) Error() string {
	return fmt.Sprintf("peer %q rejected (%s): %v", e.PeerID, e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *RejectError) Unwrap() error { return e.Err }

// ServerTLSConfig returns a TLS 1.3 configuration for the accepting side of
// a peering connection. It requires a client certificate, presents the
// current SVID (GetCertificate, per handshake), and admits the client only if
// its chain verifies to the current bundle of the client's trust domain and
// a allows its SPIFFE ID; a nil a refuses everyone.
//
// The check runs in VerifyConnection, which crypto/tls calls on every
// handshake including resumed ones, unlike VerifyPeerCertificate (Go's
// tls.Config documentation; spiffe/go-spiffe#378): a client resuming a
// session ticket after its trust domain or ID was removed from a, or its
// bundle from the files, is refused. Session tickets therefore stay enabled.
//
// The caller sets NextProtos (the tunnel uses "ewgw/1"; QUIC requires ALPN,
// RFC 9001 §8.1) and must not enable 0-RTT (quic.Config.Allow0RTT): early
// data is replayable and authenticated only by the ticket. Each call returns
// a new configuration.
func (s *Source) ServerTLSConfig(a *Authorizer) *tls.Config {
	s.auth.Store(a)
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert, // chain checked against SPIFFE bundles in VerifyConnection
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
		VerifyConnection: s.verifyConnection(a),
	}
}

// ClientTLSConfig returns a TLS 1.3 configuration for the dialling side of a
// peering connection: it presents the current SVID (GetClientCertificate,
// per handshake) and accepts the server only if its chain verifies to the
// current bundle of the server's trust domain and a allows its SPIFFE ID; a
// nil a refuses everyone. Host names play no part: peers are named by SPIFFE
// ID, so ServerName is only what goes in the SNI.
//
// As for ServerTLSConfig, the check is in VerifyConnection, so the caller may
// set ClientSessionCache; it sets NextProtos and must not dial with 0-RTT
// (quic.DialEarly).
func (s *Source) ClientTLSConfig(a *Authorizer) *tls.Config {
	s.auth.Store(a)
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.certificate() },
		// Turns off Go's Web PKI and host name check only; VerifyConnection
		// replaces it with the SPIFFE check.
		InsecureSkipVerify: true, //nolint:gosec // G402: verified in VerifyConnection
		VerifyConnection:   s.verifyConnection(a),
	}
}

// PeerID returns the SPIFFE ID of the peer of a completed handshake, from
// its leaf certificate. It does not verify anything: it is meant for
// connections made with ServerTLSConfig or ClientTLSConfig, whose
// verification already ran.
func PeerID(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("peer sent no certificate")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return "", fmt.Errorf("peer certificate: %w", err)
	}
	return id.String(), nil
}

type certEntry struct {
	svid *x509svid.SVID
	cert *tls.Certificate
}

// certificate returns the current SVID as a tls.Certificate, converted once
// per SVID.
func (s *Source) certificate() (*tls.Certificate, error) {
	svid, err := s.svids.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("current svid: %w", err)
	}
	if e := s.cert.Load(); e != nil && e.svid == svid {
		return e.cert, nil
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.cert.Store(&certEntry{svid: svid, cert: cert})
	return cert, nil
}

func (s *Source) verifyConnection(a *Authorizer) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		err := s.verify(cs.PeerCertificates, a)
		if err != nil {
			var re *RejectError
			errors.As(err, &re)
			s.m.rejections.WithLabelValues(re.Reason).Inc()
			s.log.Debug("peer rejected", "reason", re.Reason, "peer_id", re.PeerID, "resumed", cs.DidResume, "err", re.Err)
		}
		return err
	}
}

// verify checks a peer's chain: a SPIFFE ID, a bundle for its trust domain,
// a chain to that bundle valid now (X509-SVID §5) whose issuing CAs are the
// trust domain's own (checkIssuers), and the authorizer.
func (s *Source) verify(certs []*x509.Certificate, a *Authorizer) error {
	if len(certs) == 0 {
		return &RejectError{Reason: reasonNoSPIFFEID, Err: errors.New("no certificate")}
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return &RejectError{Reason: reasonNoSPIFFEID, Err: err}
	}
	reject := func(reason string, err error) error {
		return &RejectError{Reason: reason, PeerID: id.String(), Err: err}
	}
	if _, err := s.bundles.GetX509BundleForTrustDomain(id.TrustDomain()); err != nil {
		return reject(reasonUntrustedDomain, err)
	}
	_, chains, err := x509svid.Verify(certs, s.bundles, x509svid.WithTime(s.cfg.Now()))
	if err != nil {
		return reject(reasonBadChain, err)
	}
	if err := s.checkChains(chains, id.TrustDomain(), a); err != nil {
		return reject(reasonBadChain, err)
	}
	if reason := a.check(id); reason != "" {
		return reject(reason, errors.New("not allowed by policy"))
	}
	return nil
}

// checkChains passes when at least one verified chain passes checkIssuers,
// and otherwise returns the first chain's error: Go may find several chains,
// and one that is bound to td is enough.
func (s *Source) checkChains(chains [][]*x509.Certificate, td spiffeid.TrustDomain, a *Authorizer) error {
	first := errors.New("no verified chain")
	for i, c := range chains {
		err := checkIssuers(c, td, s.sharedRoot(c[len(c)-1], td, a))
		if err == nil {
			return nil
		}
		if i == 0 {
			first = err
		}
	}
	return first
}
