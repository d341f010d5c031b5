package identity

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
