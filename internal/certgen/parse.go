package certgen

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// ParseCA reads a CA from PEM: chainPEM holds the CA certificate first, then
// its issuers up to the root or short of it (Istio's cert-chain.pem, or
// ca-cert.pem alone), and keyPEM the CA's key (as ParseKey reads it). It
// checks that the first certificate is a CA that may sign certificates
// (keyCertSign, RFC 5280 §4.2.1.3) and that the key is its key. now is the
// clock for what the CA issues; nil means time.Now.
func ParseCA(chainPEM, keyPEM []byte, now func() time.Time) (*CA, error) {
	certs, err := ParseCerts(chainPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: certs[0], Key: key, Parents: certs[1:], now: now}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certificate %q is not a CA that may sign certificates", ca.Cert.Subject)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.Cert.PublicKey) {
		return nil, fmt.Errorf("the key is not the key of CA %q", ca.Cert.Subject)
	}
	return ca, nil
}

// ParseCerts returns the CERTIFICATE blocks of a PEM file in order; at least
// one.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return certs, nil
}

// ParseKey returns the first private key in a PEM file: PKCS#8 ("PRIVATE
// KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"),
// unencrypted. Other blocks, e.g. "EC PARAMETERS" before the key, are
// skipped.
func ParseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: %T cannot sign", b.Type, key)
		}
		return signer, nil
	}
}
