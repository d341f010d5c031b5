package tunnel

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// stalledClient starts a handshake with the victim that stops where the
// client would present its certificate, and stays in flight on the
// victim until the test ends.
func (r *rig) stalledClient(t *testing.T) {
	t.Helper()
	_, client := tlsConfigs(r.ca.leaf(t, "/ns/west/sa/ewgw"), r.ca)
	client.NextProtos = []string{ALPN}
	stall := make(chan struct{})
	client.Certificates = nil
	client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		<-stall
		return nil, errors.New("gave up")
	}
	udp := bindUDP(t, "127.0.0.1:0")
	tr := &quic.Transport{Conn: udp}
	ua, _ := net.ResolveUDPAddr("udp4", r.victim.addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		qc, err := tr.Dial(t.Context(), ua, client, &quic.Config{HandshakeIdleTimeout: time.Minute})
		if err == nil {
			qc.CloseWithError(0, "")
		}
	}()
	t.Cleanup(func() {
		close(stall)
		<-done
		tr.Close()
		udp.Close()
	})
}

// dialErr dials the victim as west and reports the handshake's error.
func (r *rig) dialErr(t *testing.T) error {
	t.Helper()
	_, client := tlsConfigs(r.ca.leaf(t, "/ns/west/sa/ewgw"), r.ca)
	client.NextProtos = []string{ALPN}
	udp := bindUDP(t, "127.0.0.1:0")
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ua, _ := net.ResolveUDPAddr("udp4", r.victim.addr)
	qc, err := tr.Dial(t.Context(), ua, client, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err == nil {
		qc.CloseWithError(0, "")
	}
	return err
}

func inFlight(t *testing.T, r *rig) float64 {
	return metric(t, r.victim.reg, "ewgw_tunnel_handshakes_in_flight", "").GetGauge().GetValue()
}

// TestHandshakeAdmission: past RetryAbove handshakes in flight, new ones
// prove their address with a Retry (and still connect); past MaxHandshakes,
// or MaxHandshakesPerSource from one proven address, they are refused
// before any cryptography.
func TestHandshakeAdmission(t *testing.T) {
	refused := func(err error) bool {
		var te *quic.TransportError
		return errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused && te.Remote
	}
	t.Run("global", func(t *testing.T) {
		r := newVictim(t, func(c *Config) {
			c.RetryAbove, c.MaxHandshakes, c.HandshakeTimeout = 1, 2, time.Minute
		})
		if err := r.dialErr(t); err != nil {
			t.Fatalf("quiet: %v", err)
		}
		if n := counter(t, r.victim.reg, "ewgw_tunnel_retries_total", ""); n != 0 {
			t.Errorf("%v retries when quiet", n)
		}
		eventually(t, "no handshake in flight", func() bool { return inFlight(t, r) == 0 })
		r.stalledClient(t)
		eventually(t, "one handshake in flight", func() bool { return inFlight(t, r) == 1 })
		// Busy: a Retry first, then the handshake completes.
		if err := r.dialErr(t); err != nil {
			t.Fatalf("past RetryAbove: %v", err)
		}
		if n := counter(t, r.victim.reg, "ewgw_tunnel_retries_total", ""); n < 1 {
			t.Errorf("no Retry past RetryAbove")
		}
		// That handshake leaves the count once the victim has accepted its
		// connection, a moment after the dialler returns: wait, or the
		// count below could still include it.
		eventually(t, "back to one handshake in flight", func() bool { return inFlight(t, r) == 1 })
		r.stalledClient(t)
		eventually(t, "two handshakes in flight", func() bool { return inFlight(t, r) == 2 })
		if err := r.dialErr(t); !refused(err) {
			t.Fatalf("past MaxHandshakes: %v, want CONNECTION_REFUSED", err)
		}
		// Counted per Initial packet: a ClientHello may span several.
		if n := counter(t, r.victim.reg, "ewgw_tunnel_handshakes_refused_total", admitBusy); n < 1 {
			t.Errorf("refused{busy} = %v, want some", n)
		}
	})
	t.Run("per source", func(t *testing.T) {
		r := newVictim(t, func(c *Config) {
			c.RetryAbove, c.MaxHandshakesPerSource, c.HandshakeTimeout = -1, 1, time.Minute
		})
		r.stalledClient(t)
		eventually(t, "one handshake in flight", func() bool { return inFlight(t, r) == 1 })
		if err := r.dialErr(t); !refused(err) {
			t.Fatalf("second from one address: %v, want CONNECTION_REFUSED", err)
		}
		if n := counter(t, r.victim.reg, "ewgw_tunnel_handshakes_refused_total", admitSourceBusy); n < 1 {
			t.Errorf("refused{source_busy} = %v, want some", n)
		}
		if n := counter(t, r.victim.reg, "ewgw_tunnel_handshakes_refused_total", admitBusy); n != 0 {
			t.Errorf("refused{busy} = %v, want 0", n)
		}
	})
}
