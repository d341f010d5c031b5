package identity

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandshake(t *testing.T) {
	a, b, c, d := newDomain(t, "a.example"), newDomain(t, "b.example"), newDomain(t, "c.example"), newDomain(t, "d.example")
	srvCert, srvKey := a.svid(t, "/ns/ewgw/sa/ewgw")
	const gwPath = "/ns/ewgw/sa/ewgw"
	tests := []struct {
		name       string
		clientCA   *domain // issues the client SVID
		clientID   string  // the client SVID's full SPIFFE ID
		allow      []string
		allowIDs   []string
		allowPat   []string
		clientOnly []string // trust domains the client accepts; default a.example
		serverNow  time.Duration
		wantServer string // rejection reason on the server, "" for accepted
		wantClient string // rejection reason on the client
	}{
		{name: "same trust domain", clientCA: a, clientID: "spiffe://a.example" + gwPath, allow: []string{"a.example"}},
		{name: "federated trust domain", clientCA: b, clientID: "spiffe://b.example" + gwPath, allow: []string{"a.example", "spiffe://b.example"}},
		{name: "trust domain with bundle but not allowed", clientCA: c, clientID: "spiffe://c.example" + gwPath, allow: []string{"a.example", "b.example"}, wantServer: reasonUntrustedDomain},
		{name: "trust domain without bundle", clientCA: d, clientID: "spiffe://d.example" + gwPath, allow: []string{"a.example", "d.example"}, wantServer: reasonUntrustedDomain},
		{name: "exact id", clientCA: b, clientID: "spiffe://b.example" + gwPath, allowIDs: []string{"spiffe://b.example" + gwPath}},
		{name: "other id of a listed domain", clientCA: b, clientID: "spiffe://b.example/ns/other/sa/ewgw", allowIDs: []string{"spiffe://b.example" + gwPath}, wantServer: reasonIDNotAllowed},
		{name: "id pattern", clientCA: b, clientID: "spiffe://b.example/ns/team-1/sa/ewgw", allowPat: []string{"spiffe://b.example/ns/*/sa/ewgw"}},
		{name: "id pattern stays within a segment", clientCA: b, clientID: "spiffe://b.example/ns/x/y/sa/ewgw", allowPat: []string{"spiffe://b.example/ns/*/sa/ewgw"}, wantServer: reasonIDNotAllowed},
		{name: "id pattern other domain", clientCA: c, clientID: "spiffe://c.example" + gwPath, allowPat: []string{"spiffe://b.example/ns/*/sa/ewgw"}, wantServer: reasonUntrustedDomain},
		{name: "forged trust domain", clientCA: b, clientID: "spiffe://a.example" + gwPath, allow: []string{"a.example", "b.example"}, wantServer: reasonBadChain},
		{name: "expired client svid", clientCA: a, clientID: "spiffe://a.example" + gwPath, allow: []string{"a.example"}, serverNow: 2 * time.Hour, wantServer: reasonBadChain},
		{name: "client refuses server", clientCA: b, clientID: "spiffe://b.example" + gwPath, allow: []string{"b.example"}, clientOnly: []string{"b.example"}, wantClient: reasonUntrustedDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := New(t.Context(), Config{
				Files:      writeIdentity(t, t.TempDir(), trusting(srvCert, srvKey, a, b, c)),
				Registerer: prometheus.NewRegistry(),
				Now:        func() time.Time { return time.Now().Add(tt.serverNow) },
			})
			if err != nil {
				t.Fatal(err)
			}
			cliCert, cliKey, err := tt.clientCA.inter.IssueSVID(tt.clientID, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cli := newSource(t, trusting(cliCert, cliKey, a, b, c, d))
			cliAllow := tt.clientOnly
			if cliAllow == nil {
				cliAllow = []string{"a.example"}
			}

			r := handshake(t, srv.ServerTLSConfig(authz(t, tt.allow, tt.allowIDs, tt.allowPat)), clientConfig(cli, authz(t, cliAllow, nil, nil)))

			if !checkVerdict(t, srv, cli, r, tt.wantServer, tt.wantClient) {
				return
			}
			if got, err := PeerID(r.server); got != tt.clientID || err != nil {
				t.Errorf("server PeerID = %q, %v; want %q", got, err, tt.clientID)
			}
			if got, err := PeerID(r.client); got != srv.ID() || err != nil {
				t.Errorf("client PeerID = %q, %v; want %q", got, err, srv.ID())
			}
			if r.client.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", r.client.Version)
			}
		})
	}
}

// checkVerdict checks a connection's outcome: accepted by both sides, or
// refused by one with the reason counted once there, and failed on the other
// side. It reports whether the connection was accepted.
func checkVerdict(t *testing.T, srv, cli *Source, r result, wantServer, wantClient string) bool {
	t.Helper()
	switch {
	case wantServer != "":
		checkRejected(t, "server", srv, r.serverErr, wantServer)
		if r.clientErr == nil {
			t.Error("client saw success on a connection the server refused")
		}
	case wantClient != "":
		checkRejected(t, "client", cli, r.clientErr, wantClient)
		if r.serverErr == nil {
			t.Error("server saw success on a connection the client refused")
		}
	default:
		if r.serverErr != nil || r.clientErr != nil {
			t.Errorf("refused: server %v, client %v", r.serverErr, r.clientErr)
		}
		return r.serverErr == nil && r.clientErr == nil
	}
	return false
}

func checkRejected(t *testing.T, side string, s *Source, err error, reason string) {
	t.Helper()
	var re *RejectError
	if !errors.As(err, &re) || re.Reason != reason {
		t.Errorf("%s: err = %v, want a RejectError with reason %s", side, err, reason)
	}
	if got := rejections(s, reason); got != 1 {
		t.Errorf("%s: rejections{reason=%s} = %v, want 1", side, reason, got)
	}
}

// TestResumptionRechecksPolicy is the session-resumption trap: crypto/tls
// does not call VerifyPeerCertificate on resumed sessions, so a peer removed
// from the policy could resume a ticket issued before. The check runs in
// VerifyConnection and must refuse it.
func TestResumptionRechecksPolicy(t *testing.T) {
	a, b := newDomain(t, "a.example"), newDomain(t, "b.example")
	tests := []struct {
		name       string
		revoke     func(srvAuthz, cliAuthz *Authorizer) error
		wantServer string
		wantClient string
	}{
		{name: "unchanged policy resumes"},
		{
			name:       "server drops the client's trust domain",
			revoke:     func(s, _ *Authorizer) error { return s.Set([]string{"a.example"}, nil, nil) },
			wantServer: reasonUntrustedDomain,
		},
		{
			name:       "server narrows to another id",
			revoke:     func(s, _ *Authorizer) error { return s.Set(nil, []string{"spiffe://b.example/ns/other/sa/ewgw"}, nil) },
			wantServer: reasonIDNotAllowed,
		},
		{
			name:       "client drops the server's trust domain",
			revoke:     func(_, c *Authorizer) error { return c.Set([]string{"b.example"}, nil, nil) },
			wantClient: reasonUntrustedDomain,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvCert, srvKey := a.svid(t, "/ns/ewgw/sa/ewgw")
			cliCert, cliKey := b.svid(t, "/ns/ewgw/sa/ewgw")
			srv := newSource(t, trusting(srvCert, srvKey, a, b))
			cli := newSource(t, trusting(cliCert, cliKey, a, b))
			srvAuthz := authz(t, []string{"a.example", "b.example"}, nil, nil)
			cliAuthz := authz(t, []string{"a.example"}, nil, nil)

			srvCfg := srv.ServerTLSConfig(srvAuthz)
			var resumed []bool // what each server-side verification saw
			verify := srvCfg.VerifyConnection
			srvCfg.VerifyConnection = func(cs tls.ConnectionState) error {
				resumed = append(resumed, cs.DidResume)
				return verify(cs)
			}
			cliCfg := clientConfig(cli, cliAuthz)
			cliCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			first := handshake(t, srvCfg, cliCfg)
			if first.serverErr != nil || first.clientErr != nil || first.client.DidResume {
				t.Fatalf("first connection: server %v, client %v, resumed %v", first.serverErr, first.clientErr, first.client.DidResume)
			}
			if tt.revoke != nil {
				if err := tt.revoke(srvAuthz, cliAuthz); err != nil {
					t.Fatal(err)
				}
			}
			second := handshake(t, srvCfg, cliCfg)
			if len(resumed) != 2 || !resumed[1] {
				t.Fatalf("server verifications saw resumed = %v, want [false true]", resumed)
			}
			if checkVerdict(t, srv, cli, second, tt.wantServer, tt.wantClient) && !second.client.DidResume {
				t.Error("second connection did not resume")
			}
		})
	}
}

func TestPeerIDWithoutCertificate(t *testing.T) {
	if _, err := PeerID(tls.ConnectionState{}); err == nil {
		t.Error("PeerID of a state without certificates succeeded")
	}
}
