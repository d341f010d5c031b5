package certcli

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ewgw/ewgw/internal/certgen"
)

// TestCertsRotate renews one cluster's intermediate in each setup: a new CA
// key and certificate under the same root, for the same cluster and trust
// domain, a new gateway SVID, the bundles and the other clusters untouched,
// and the renewed gateway still peers with an unchanged one.
func TestCertsRotate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		tds  [2]string
	}{
		{name: "shared root", args: []string{"--clusters", "east,west"}, tds: [2]string{"east.ewgw.local", "west.ewgw.local"}},
		{name: "federated", args: []string{"--clusters", "east,west", "--federated"}, tds: [2]string{"east.ewgw.local", "west.ewgw.local"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			if err := Run(t.Context(), append(tt.args, "--out", dir), &out); err != nil {
				t.Fatal(err)
			}
			before := readDir(t, dir)
			out.Reset()
			if err := Run(t.Context(), []string{"rotate", "--out", dir, "--cluster", "east", "--ca-ttl", "720h"}, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "kubectl apply -f "+filepath.Join(dir, "east", "ewgw-ca.yaml")) {
				t.Errorf("output:\n%s", out.String())
			}
			after := readDir(t, dir)
			for name, b := range before {
				changed := !bytes.Equal(b, after[name])
				want := strings.HasPrefix(name, "east/") && !strings.HasPrefix(name, "east/bundle") && name != "east/root-cert.pem"
				if changed != want {
					t.Errorf("%s: changed %v, want %v", name, changed, want)
				}
			}
			oldCA, newCA := parsePEM(t, before["east/ca-cert.pem"]), parsePEM(t, after["east/ca-cert.pem"])
			if newCA.Subject.String() != oldCA.Subject.String() || newCA.URIs[0].String() != oldCA.URIs[0].String() ||
				newCA.PermittedURIDomains[0] != tt.tds[0] || newCA.NotAfter.Sub(newCA.NotBefore) > 721*60*60*1e9 {
				t.Errorf("new intermediate %v %v %v, valid %v to %v", newCA.Subject, newCA.URIs, newCA.PermittedURIDomains, newCA.NotBefore, newCA.NotAfter)
			}
			east := loadGateway(t, filepath.Join(dir, "east"), tt.tds[0], tt.tds[1])
			west := loadGateway(t, filepath.Join(dir, "west"), tt.tds[1], tt.tds[0])
			mtls(t, east, west, tt.tds[1], tt.tds[0])
			mtls(t, west, east, tt.tds[0], tt.tds[1])
		})
	}
}

func TestCertsRotateBadInput(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"--out", dir, "--clusters", "east"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		prep func()
		want string
	}{
		{name: "no cluster", args: []string{"--out", dir}, want: "--out and --cluster are required"},
		{name: "unknown cluster", args: []string{"--out", dir, "--cluster", "nope"}, want: "ca-cert.pem"},
		{name: "root key gone", args: []string{"--out", dir, "--cluster", "east"}, prep: func() { os.Remove(filepath.Join(dir, "root-key.pem")) }, want: "root key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prep != nil {
				tt.prep()
			}
			err := Run(t.Context(), append([]string{"rotate"}, tt.args...), &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// readDir returns every regular file under dir by relative path.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	certs, err := certgen.ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
