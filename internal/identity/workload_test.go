package identity

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWorkloadAPIMissingSocket(t *testing.T) {
	sock := "unix://" + filepath.Join(t.TempDir(), "agent.sock")
	start := time.Now()
	s, err := New(t.Context(), Config{WorkloadAPISocket: sock, InitTimeout: 200 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("New succeeded without an agent")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), sock) {
		t.Errorf("err = %v, want a deadline error naming %s", err, sock)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("New took %v, not bounded by InitTimeout", d)
	}
}

func TestWorkloadAPIAddress(t *testing.T) {
	tests := []struct {
		name   string
		env    string
		socket string
		want   error
		text   string
	}{
		{name: "no socket anywhere", want: ErrNoSocket},
		{name: "bad scheme from env", env: "http://x", text: "workload api socket"},
		{name: "relative unix path", socket: "unix:agent.sock", text: "workload api socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(SocketEnv, tt.env)
			s, err := New(t.Context(), Config{UseWorkloadAPI: true, WorkloadAPISocket: tt.socket, InitTimeout: time.Second})
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestWorkloadAPIRotation(t *testing.T) {
	a, b := newDomain(t, "a.example"), newDomain(t, "b.example")
	agent := startAgent(t)
	const id = "spiffe://a.example/ns/ewgw/sa/ewgw"
	cert1 := agent.set(t, a, id, b)

	srv, err := New(t.Context(), Config{WorkloadAPISocket: agent.addr, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	updated := make(chan struct{}, 1)
	srv.updated = func() { updated <- struct{}{} }
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	if srv.ID() != id {
		t.Errorf("ID = %q, want %q", srv.ID(), id)
	}

	// A client in the federated trust domain b is verified with the bundle
	// the agent delivered for b.
	cliCert, cliKey := b.svid(t, "/ns/ewgw/sa/ewgw")
	cli := newSource(t, trusting(cliCert, cliKey, a))
	srvCfg := srv.ServerTLSConfig(authz(t, []string{"b.example"}, nil, nil))
	cliCfg := clientConfig(cli, authz(t, []string{"a.example"}, nil, nil))
	r := handshake(t, srvCfg, cliCfg)
	if checkVerdict(t, srv, cli, r, "", "") && leafSerial(t, r.client).Cmp(pemSerial(t, cert1)) != 0 {
		t.Error("served serial is not the agent's first SVID")
	}

	cert2 := agent.set(t, a, id, b)
	waitUpdate(t, updated)
	if got := testutil.ToFloat64(srv.m.rotations); got != 1 {
		t.Errorf("rotations = %v, want 1", got)
	}
	r = handshake(t, srvCfg, cliCfg)
	if checkVerdict(t, srv, cli, r, "", "") && leafSerial(t, r.client).Cmp(pemSerial(t, cert2)) != 0 {
		t.Error("after the agent's update the served serial is not the new SVID's")
	}

	// Dropping the federation refuses b's peers.
	agent.set(t, a, id)
	waitUpdate(t, updated)
	checkVerdict(t, srv, cli, handshake(t, srvCfg, cliCfg), reasonUntrustedDomain, "")

	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
	if srv.ID() != "" {
		t.Error("source still serves after Run returned")
	}
}

// waitUpdate waits, bounded, for Run to have taken an agent update in.
func waitUpdate(t *testing.T, updated <-chan struct{}) {
	t.Helper()
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("no update from the agent")
	}
}
