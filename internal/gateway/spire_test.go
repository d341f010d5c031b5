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
	bin, dir, td          string
	port, bundlePort      int
	serverSock, agentSock string
}

// newSPIRE prepares a SPIRE for td: a directory and ports. start runs it.
func newSPIRE(t *testing.T, td string) *spire {
	t.Helper()
	bin := spireBin(t)
	// Unix socket paths are limited to 108 bytes; t.TempDir's can be long.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &spire{bin: bin, dir: dir, td: td, port: freePort(t), bundlePort: freePort(t),
		serverSock: filepath.Join(dir, "server.sock"), agentSock: filepath.Join(dir, "agent.sock")}
}

// startSPIRE starts a SPIRE server for td and its agent (startSPIRE's
// defaults, no federation).
func startSPIRE(t *testing.T, td string) *spire {
	t.Helper()
	s := newSPIRE(t, td)
	s.start(t)
	return s
}

// start runs the server (SQLite, in-memory keys, join-token node
// attestation; with peers, a bundle endpoint and federation with each of
// them over the https_spiffe profile) and an agent attested with a join
// token, with the unix workload attestor. Both stop when the test ends.
func (s *spire) start(t *testing.T, peers ...*spire) {
	t.Helper()
	federation := ""
	if len(peers) > 0 {
		federation = fmt.Sprintf("  federation {\n    bundle_endpoint {\n      address = \"127.0.0.1\"\n      port = %d\n      refresh_hint = \"1m\"\n    }\n", s.bundlePort)
		for _, p := range peers {
			federation += fmt.Sprintf(`    federates_with %q {
      bundle_endpoint_url = "https://127.0.0.1:%d"
      bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://%s/spire/server" }
    }
`, p.td, p.bundlePort, p.td)
		}
		federation += "  }\n"
	}
	writeConf(t, filepath.Join(s.dir, "server.conf"), fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "WARN"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
%s}
plugins {
  DataStore "sql" { plugin_data { database_type = "sqlite3", connection_string = %q } }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
`, s.port, s.serverSock, s.td, filepath.Join(s.dir, "server"), federation, filepath.Join(s.dir, "datastore.sqlite3")))
	s.daemon(t, "spire-server", "run", "-config", filepath.Join(s.dir, "server.conf"))
	s.waitHealthy(t, "spire-server", "-socketPath", s.serverSock)

	token := strings.TrimPrefix(strings.TrimSpace(s.server(t, "token", "generate", "-spiffeID", "spiffe://"+s.td+"/agent")), "Token: ")
	writeConf(t, filepath.Join(s.dir, "agent.conf"), fmt.Sprintf(`agent {
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
`, s.port, s.agentSock, s.td, filepath.Join(s.dir, "agent"), token))
	s.daemon(t, "spire-agent", "run", "-config", filepath.Join(s.dir, "agent.conf"))
	s.waitHealthy(t, "spire-agent", "-socketPath", s.agentSock)
}

// register creates the gateway's entry under the agent: the SPIFFE ID
// spiffe://<td>/ns/ewgw/sa/ewgw for this process's uid (unix workload
// attestor), X509-SVIDs valid ttl, federated with the trust domains given.
func (s *spire) register(t *testing.T, ttl time.Duration, federatesWith ...string) {
	t.Helper()
	args := []string{"entry", "create", "-parentID", "spiffe://" + s.td + "/agent",
		"-spiffeID", "spiffe://" + s.td + "/ns/ewgw/sa/ewgw", "-selector", "unix:uid:" + strconv.Itoa(os.Getuid()),
		"-x509SVIDTTL", strconv.Itoa(int(ttl.Seconds()))}
	for _, td := range federatesWith {
		args = append(args, "-federatesWith", "spiffe://"+td)
	}
	s.server(t, args...)
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
	t.Parallel() // mostly waiting on SPIRE's timers
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
	sp.register(t, ttl, "b.ewgw.local")
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

// authorityID returns the Authority ID listed under section ("Active",
// "Prepared" or "Old") in `spire-server localauthority x509 show` output.
func authorityID(t *testing.T, show, section string) string {
	t.Helper()
	_, rest, ok := strings.Cut(show, section+" X.509 authority:")
	if !ok {
		t.Fatalf("no %s authority in:\n%s", section, show)
	}
	_, rest, ok = strings.Cut(rest, "Authority ID: ")
	if !ok {
		t.Fatalf("no %s authority ID in:\n%s", section, show)
	}
	id, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(id)
}

// within waits until cond holds, checking every 250ms for at most d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("not within %v: %s", d, what)
		}
	}
}

// bundleRoots is the number of roots gw holds for td, 0 if none.
func bundleRoots(gw *Gateway, td string) int {
	for _, b := range gw.peering.ident.Expiry().Bundles {
		if b.TrustDomain == td {
			return b.Roots
		}
	}
	return 0
}

// TestSPIREFederation: two SPIRE servers, one per trust domain, federated
// through their bundle endpoints (https_spiffe profile) after a one-time
// bootstrap (`spire-server bundle show` and `bundle set`). Both gateways
// take their SVIDs and the other domain's bundle from the Workload API
// alone: no bundle file anywhere. While traffic runs both ways, b's SPIRE
// prepares a new X.509 authority, and the bundle carrying the new root
// reaches gateway a through federation, without a restart or an edit; b's
// SPIRE then activates it and taints the old one, b's agent re-issues b's
// SVID under the new root, and a keeps accepting b.
func TestSPIREFederation(t *testing.T) {
	t.Parallel() // mostly waiting on SPIRE's timers: the refresh hint is a minute
	ttl := envDuration(t, "EWGW_SPIRE_TTL", 20*time.Second)
	sa, sb := newSPIRE(t, "a.ewgw.local"), newSPIRE(t, "b.ewgw.local")
	sa.start(t, sb)
	sb.start(t, sa)
	for _, p := range [][2]*spire{{sa, sb}, {sb, sa}} {
		path := filepath.Join(p[0].dir, p[1].td+".bundle")
		writeConf(t, path, p[1].server(t, "bundle", "show", "-format", "spiffe"))
		p[0].server(t, "bundle", "set", "-format", "spiffe", "-id", "spiffe://"+p[1].td, "-path", path)
	}
	sa.register(t, ttl, sb.td)
	sb.register(t, ttl, sa.td)

	l := newTestLab(t, "a", "b")
	l.workloadAPI = map[string]string{"a": "unix://" + sa.agentSock, "b": "unix://" + sb.agentSock}
	c := &caLab{l: l, web: bulkService(t, webName), api: bulkService(t, apiName)}
	apiSvc := []LabService{{Name: "api", Namespace: "shop", Port: 443, Endpoints: []string{c.api.backend.Addr()}, Exported: true}}
	c.b, _ = startLab(t, l, "b", "127.0.0.1:0", exported(c.web.backend.Addr()), []LabPeer{{Cluster: "a"}})
	c.a, _ = startLab(t, l, "a", "127.0.0.1:0", apiSvc, []LabPeer{{Cluster: "b", Addr: c.b.Addr()}})
	waitPeers(t, c.a, "b")
	waitTarget(t, c.b, apiTarget, "a")
	if n := bundleRoots(c.a, sb.td); n != 1 {
		t.Fatalf("gateway a holds %d roots for %s from SPIRE, want 1", n, sb.td)
	}
	stop := c.traffic(t)

	// b's SPIRE prepares a new authority: its root joins b's bundle, which
	// SPIRE a fetches from b's bundle endpoint (the refresh hint, 1 minute,
	// is SPIRE's minimum) and its agent hands to gateway a.
	sb.server(t, "localauthority", "x509", "prepare")
	show := sb.server(t, "localauthority", "x509", "show")
	old, next := authorityID(t, show, "Active"), authorityID(t, show, "Prepared")
	start := time.Now()
	within(t, 3*time.Minute, "b's new root reaches gateway a through federation", func() bool { return bundleRoots(c.a, sb.td) == 2 })
	t.Logf("b's new root reached gateway a %v after it was prepared", time.Since(start).Round(time.Second))

	// The new authority signs b's SVIDs from now on.
	sb.server(t, "localauthority", "x509", "activate", "-authorityID", next)
	sb.server(t, "localauthority", "x509", "taint", "-authorityID", old)
	within(t, 2*ttl, "gateway b's SVID is signed by the new authority", func() bool {
		return c.b.peering.ident.Expiry().SVIDIssuerKeyID == next
	})
	<-time.After(ttl) // every connection made again with b's new SVID
	stop()
	if p := c.a.peering.tun.Peers(); len(p) != 1 || !p[0].Up {
		t.Errorf("a's view of b after b's authority changed: %+v", p)
	}
}
