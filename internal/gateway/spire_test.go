package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
)

// spireVersion is the SPIRE release scripts/spire.sh builds by default.
const spireVersion = "v1.13.3"

// spireBin returns the directory of spire-server and spire-agent as
// scripts/spire.sh caches them, or skips the test.
func spireBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a real SPIRE takes a minute: skipped with -short")
	}
	cache := os.Getenv("EWGW_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "ewgw")
	}
	dir := filepath.Join(cache, "spire-"+spireVersion)
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("no %s in %s: run scripts/spire.sh (make deps) to test against a real SPIRE", b, dir)
		}
	}
	return dir
}

// spire is a SPIRE server and agent for one trust domain, on loopback and
// unix sockets in a temporary directory.
type spire struct {
	bin, dir, td string
	serverSock   string
	agentSock    string
}

// startSPIRE starts a SPIRE server for td (SQLite, in-memory keys,
// join-token node attestation) and an agent attested with a join token,
// with the unix workload attestor. Both stop when the test ends.
func startSPIRE(t *testing.T, td string) *spire {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir's can be long.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &spire{bin: spireBin(t), dir: dir, td: td,
		serverSock: filepath.Join(dir, "server.sock"), agentSock: filepath.Join(dir, "agent.sock")}
	port := freePort(t)
	writeConf(t, filepath.Join(dir, "server.conf"), fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "WARN"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
}
plugins {
  DataStore "sql" { plugin_data { database_type = "sqlite3", connection_string = %q } }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
`, port, s.serverSock, td, filepath.Join(dir, "server"), filepath.Join(dir, "datastore.sqlite3")))
	s.daemon(t, "spire-server", "run", "-config", filepath.Join(dir, "server.conf"))
	s.waitHealthy(t, "spire-server", "-socketPath", s.serverSock)

	token := strings.TrimPrefix(strings.TrimSpace(s.server(t, "token", "generate", "-spiffeID", "spiffe://"+td+"/agent")), "Token: ")
	writeConf(t, filepath.Join(dir, "agent.conf"), fmt.Sprintf(`agent {
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "WARN"
  insecure_bootstrap = true
  join_token = %q
}
plugins {
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
  WorkloadAttestor "unix" { plugin_data {} }
}
`, port, s.agentSock, td, filepath.Join(dir, "agent"), token))
	s.daemon(t, "spire-agent", "run", "-config", filepath.Join(dir, "agent.conf"))
	s.waitHealthy(t, "spire-agent", "-socketPath", s.agentSock)
	return s
}

// daemon starts a SPIRE binary that runs until the test ends; its output
// is shown if the test fails.
func (s *spire) daemon(t *testing.T, bin string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(s.bin, bin), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, out.String())
		}
	})
}

// waitHealthy runs BIN healthcheck until it passes, for at most 30s.
func (s *spire) waitHealthy(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := exec.CommandContext(ctx, filepath.Join(s.bin, bin), append([]string{"healthcheck"}, args...)...).CombinedOutput()
		if err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s never became healthy: %v\n%s", bin, err, out)
		}
	}
}

// server runs a spire-server command against the server's socket.
func (s *spire) server(t *testing.T, args ...string) string {
	t.Helper()
	args = append(args, "-socketPath", s.serverSock)
	out, err := exec.CommandContext(t.Context(), filepath.Join(s.bin, "spire-server"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("spire-server %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func writeConf(t *testing.T, path, conf string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestSPIREWorkloadAPIRotation: gateway a takes its SVID from a real SPIRE
// agent over the Workload API (unix workload attestor: the entry selects
// this process's uid) with a short X509-SVID TTL, and b's trust domain's
// bundle from SPIRE as a federated bundle (spire-server bundle set). b, on
// files, trusts SPIRE's bundle for a's trust domain. Traffic runs both ways
// while the agent rotates a's SVID several times; every exchange checks
// SHA-256 both ways, and b sees a's renewed certificates.
func TestSPIREWorkloadAPIRotation(t *testing.T) {
	ttl := envDuration(t, "EWGW_SPIRE_TTL", 20*time.Second)
	const rotations = 3
	l := newTestLab(t, "a", "b")
	sp := startSPIRE(t, "a.ewgw.local")
	cb, err := l.cluster("b")
	if err != nil {
		t.Fatal(err)
	}
	rootB := filepath.Join(sp.dir, "b-root.pem")
	writeConf(t, rootB, string(cb.Root.RootPEM()))
	sp.server(t, "bundle", "set", "-id", "spiffe://b.ewgw.local", "-path", rootB)
	sp.server(t, "entry", "create", "-parentID", "spiffe://a.ewgw.local/agent",
		"-spiffeID", "spiffe://a.ewgw.local/ns/ewgw/sa/ewgw", "-selector", "unix:uid:"+strconv.Itoa(os.Getuid()),
		"-x509SVIDTTL", strconv.Itoa(int(ttl.Seconds())), "-federatesWith", "spiffe://b.ewgw.local")
	// b trusts SPIRE's root for a's trust domain.
	bundleA := sp.server(t, "bundle", "show", "-format", "pem")
	writeConf(t, filepath.Join(l.dir, "b", certgen.BundleFile("b.ewgw.local", "a.ewgw.local")), bundleA)

	l.workloadAPI = map[string]string{"a": "unix://" + sp.agentSock}
	c := &caLab{l: l, web: bulkService(t, webName), api: bulkService(t, apiName)}
	apiSvc := []LabService{{Name: "api", Namespace: "shop", Port: 443, Endpoints: []string{c.api.backend.Addr()}, Exported: true}}
	c.b, _ = startLab(t, l, "b", "127.0.0.1:0", exported(c.web.backend.Addr()), []LabPeer{{Cluster: "a"}})
	c.a, _ = startLab(t, l, "a", "127.0.0.1:0", apiSvc, []LabPeer{{Cluster: "b", Addr: c.b.Addr()}})
	waitPeers(t, c.a, "b")
	waitTarget(t, c.b, apiTarget, "a")
	if id := c.a.peering.ident.ID(); id != "spiffe://a.ewgw.local/ns/ewgw/sa/ewgw" {
		t.Fatalf("a's SVID from SPIRE is %s", id)
	}

	stop := c.traffic(t)
	seen := map[time.Time]bool{c.a.peering.ident.Expiry().SVID: true}
	deadline := time.After(time.Duration(rotations+1) * ttl)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for len(seen) <= rotations {
		select {
		case <-tick.C:
			seen[c.a.peering.ident.Expiry().SVID] = true
		case <-deadline:
			stop()
			t.Fatalf("SPIRE issued a %d SVIDs in %v, want %d rotations", len(seen), time.Duration(rotations+1)*ttl, rotations)
		}
	}
	stop()
	t.Logf("a received %d SVIDs from SPIRE (x509 TTL %v)", len(seen), ttl)
	if p := c.b.peering.tun.Peers(); len(p) != 1 || !p[0].Up || time.Until(p[0].CertNotAfter) > ttl {
		t.Errorf("b's view of a after the rotations: %+v", p)
	}
}
