package tunnel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// expectation is a parsed Peer.Expect: a whole SPIFFE ID, or any ID in a
// trust domain when id is empty.
type expectation struct {
	trustDomain string
	id          string
}

// parseExpect parses "spiffe://td/path", "spiffe://td" or "td".
func parseExpect(s string) (expectation, error) {
	if s == "" {
		return expectation{}, errors.New("expect is empty")
	}
	if !strings.Contains(s, "://") {
		s = "spiffe://" + s
	}
	u, err := parseSPIFFE(s)
	if err != nil {
		return expectation{}, fmt.Errorf("expect %q: %w", s, err)
	}
	e := expectation{trustDomain: u.Host}
	if u.Path != "" && u.Path != "/" {
		e.id = u.String()
	}
	return e, nil
}

// match reports whether the SPIFFE ID id satisfies e.
func (e expectation) match(id string) bool {
	if e.id != "" {
		return id == e.id
	}
	u, err := parseSPIFFE(id)
	return err == nil && u.Host == e.trustDomain
}

func parseSPIFFE(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%q is not a SPIFFE ID", s)
	}
	return u, nil
}

// peerID returns the SPIFFE ID of the peer's leaf certificate: its first URI
// SAN, which the SPIFFE X.509-SVID spec requires to be its only one.
func peerID(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("peer sent no certificate")
	}
	uris := cs.PeerCertificates[0].URIs
	if len(uris) == 0 {
		return "", errors.New("peer certificate has no URI SAN")
	}
	u, err := parseSPIFFE(uris[0].String())
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// errNoClientCert refuses a client that presented no certificate.
var errNoClientCert = errors.New("tls: client didn't provide a certificate")

// errNoALPN refuses a client that does not offer the peering protocol.
var errNoALPN = errors.New("tls: client does not speak " + ALPN)

// prepareTLS makes a copy of c fit for peering: ALPN ewgw/1, TLS 1.3 only,
// a client certificate required on servers, and a VerifyConnection that
// counts the caller's rejections and insists on a SPIFFE ID. A server asks
// for the certificate (RequestClientCert) and refuses its absence in
// VerifyConnection, which crypto/tls runs on full and resumed handshakes
// alike, rather than leaving it to RequireAnyClientCert: so an
// unauthenticated client on the public address is counted (no_cert). The caller's
// own VerifyConnection still runs first, on full handshakes and resumptions
// alike. A server refuses a client that does not offer ALPN ewgw/1 before
// showing its certificate (alpn). A GetConfigForClient callback's configs
// get the same treatment.
func (t *Tunnel) prepareTLS(c *tls.Config, server bool) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{ALPN}
	c.MinVersion = tls.VersionTLS13
	if server {
		c.ClientAuth = tls.RequestClientCert
	}
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if server && len(cs.PeerCertificates) == 0 {
			t.m.handshakeFailures.WithLabelValues(reasonNoCert).Inc()
			return errNoClientCert
		}
		if verify != nil {
			if err := verify(cs); err != nil {
				t.m.handshakeFailures.WithLabelValues(reasonVerify).Inc()
				return err
			}
		}
		if _, err := peerID(cs); err != nil {
			t.m.handshakeFailures.WithLabelValues(reasonNoID).Inc()
			return err
		}
		return nil
	}
	if !server {
		return c
	}
	get := c.GetConfigForClient
	c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		// Only a client speaking the peering protocol gets as far as this
		// side's certificate: on TCP anyone can start a TLS handshake
		// (QUIC requires ALPN of its own).
		if !slices.Contains(hi.SupportedProtos, ALPN) {
			t.m.handshakeFailures.WithLabelValues(reasonALPN).Inc()
			return nil, errNoALPN
		}
		if get == nil {
			return nil, nil
		}
		cc, err := get(hi)
		if err != nil || cc == nil {
			return cc, err
		}
		cc = t.prepareTLS(cc, server)
		cc.GetConfigForClient = nil
		return cc, nil
	}
	return c
}
