package certcli

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/identity"
)

func TestCertsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no out", args: []string{"--clusters", "a"}, want: "--out is required"},
		{name: "no clusters", args: []string{"--out", "x"}, want: "--clusters is required"},
		{name: "both trust domain flags", args: []string{"--out", "x", "--clusters", "a", "--trust-domain", "t.local", "--trust-domain-template", "{cluster}.x"}, want: "exclude each other"},
		{name: "federated with a shared domain", args: []string{"--out", "x", "--clusters", "a,b", "--trust-domain", "t.local", "--federated"}, want: "federated"},
		{name: "bad cluster", args: []string{"--out", "x", "--clusters", "A_1"}, want: "DNS label"},
		{name: "zero ttl", args: []string{"--out", "x", "--clusters", "a", "--ttl", "0s"}, want: "--ttl must be positive"},
		{name: "stray argument", args: []string{"--out", "x", "--clusters", "a", "extra"}, want: `unexpected argument "extra"`},
		{name: "unknown flag", args: []string{"--nope"}, want: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(t.Context(), tt.args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%q) = %v, want it to mention %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestCertsNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--out", dir, "--clusters", "a"}
	if err := Run(t.Context(), args, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "a", "svid.pem"))
	if err := Run(t.Context(), args, new(bytes.Buffer)); !errors.Is(err, certgen.ErrExists) {
		t.Fatalf("second run: %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "a", "svid.pem")); !bytes.Equal(before, after) {
		t.Fatal("a refused run changed svid.pem")
	}
	if err := Run(t.Context(), append(args, "--force"), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "a", "svid.pem")); bytes.Equal(before, after) {
		t.Fatal("--force left svid.pem unchanged")
	}
}

// TestCertsForceRefusesSymlink: --force does not write through a link that
// points out of the output directory; the file it points at is untouched.
func TestCertsForceRefusesSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	args := []string{"--out", dir, "--clusters", "a"}
	if err := Run(t.Context(), args, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "authorized_keys")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "a", certgen.FileSVIDKey)
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, key); err != nil {
		t.Fatal(err)
	}
	if err := Run(t.Context(), append(args, "--force"), new(bytes.Buffer)); !errors.Is(err, certgen.ErrNotRegular) {
		t.Fatalf("--force over a symlink: %v, want ErrNotRegular", err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("file behind the link now %q, %v", b, err)
	}
	if st, err := os.Stat(victim); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file behind the link: mode %v, %v", st.Mode(), err)
	}
}

// TestCertsInteroperate mints each setup with the command, loads every
// gateway's files with package identity and connects the first two
// gateways with mutual TLS, each allowing the other's trust domain.
func TestCertsInteroperate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		tds  [2]string
	}{
		{name: "shared root, trust domain per cluster", args: []string{"--clusters", "east,west"}, tds: [2]string{"east.ewgw.local", "west.ewgw.local"}},
		{name: "shared trust domain", args: []string{"--clusters", "east,west", "--trust-domain", "mesh.local"}, tds: [2]string{"mesh.local", "mesh.local"}},
		{name: "federated", args: []string{"--clusters", "east,west,north", "--trust-domain-template", "{cluster}.corp", "--federated"}, tds: [2]string{"east.corp", "west.corp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			if err := Run(t.Context(), append(tt.args, "--out", dir), &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "wrote "+filepath.Join(dir, "east", "ewgw-identity.yaml")) {
				t.Errorf("output does not list the identity secret:\n%s", out.String())
			}
			east := loadGateway(t, filepath.Join(dir, "east"), tt.tds[0], tt.tds[1])
			west := loadGateway(t, filepath.Join(dir, "west"), tt.tds[1], tt.tds[0])
			if east.ID() != "spiffe://"+tt.tds[0]+"/ns/ewgw/sa/ewgw" {
				t.Errorf("east ID = %s", east.ID())
			}
			mtls(t, east, west, tt.tds[1], tt.tds[0])
		})
	}
}

func loadGateway(t *testing.T, dir, own, peer string) *identity.Source {
	t.Helper()
	bundles := map[string]string{own: filepath.Join(dir, "bundle.pem")}
	if peer != own {
		bundles[peer] = filepath.Join(dir, "bundle-"+peer+".pem")
	}
	s, err := identity.New(t.Context(), identity.Config{Files: &identity.FileConfig{
		CertChain: filepath.Join(dir, "svid.pem"), Key: filepath.Join(dir, "svid-key.pem"), Bundles: bundles,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mtls(t *testing.T, srv, cli *identity.Source, cliTD, srvTD string) {
	t.Helper()
	srvAuthz, err := identity.ParseAuthorizer([]string{cliTD}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cliAuthz, err := identity.ParseAuthorizer([]string{srvTD}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv.ServerTLSConfig(srvAuthz))
		err := s.HandshakeContext(t.Context())
		if err == nil {
			_, err = s.Write([]byte("ok"))
		}
		done <- err
	}()
	c := tls.Client(b, cli.ClientTLSConfig(cliAuthz))
	buf := make([]byte, 2)
	if err := c.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	if id, _ := identity.PeerID(c.ConnectionState()); id != srv.ID() {
		t.Errorf("client sees peer %s, want %s", id, srv.ID())
	}
}
