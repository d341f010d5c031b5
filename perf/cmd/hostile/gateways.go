package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// The clusters: A is the well-behaved peer that dials B, B the victim that
// serves the bench services, C the hostile peer B allows. Each has its own
// SVID from "ewgw certs" and its own region in B's configuration.
const (
	clusterA = bench.ClusterA
	clusterB = bench.ClusterB
	clusterC = "cluster-c"
)

// region is the region B's configuration gives a cluster.
func region(cluster string) string { return "region-" + strings.TrimPrefix(cluster, "cluster-") }

// setup is what every scenario shares.
type setup struct {
	o                   options
	dir, certs, backend string
	client              *tls.Config
	n                   int      // gateways started, for their directories
	initials            [][]byte // the Initial flood's datagrams, made once
}

// gateway is one "ewgw run" process.
type gateway struct {
	cluster string
	addr    string // TCP listener, and the QUIC listener's UDP port
	admin   string
	dir     string
	cmd     *exec.Cmd
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }
func (g *gateway) stop()    { bench.Stop(g.cmd, 5*time.Second) }

// startVictim starts B: it exports the bench services (endpoint: the
// backend), allows A's and C's trust domains, and dials nobody. Every
// budget is at its default.
func (e *setup) startVictim() (*gateway, error) {
	peers := fmt.Sprintf(`    - {name: %s, id: %q, region: %s, addrs: []}
    - {name: %s, id: %q, region: %s, addrs: []}
`, clusterA, bench.SpiffeID(clusterA), region(clusterA), clusterC, bench.SpiffeID(clusterC), region(clusterC))
	svcs := fmt.Sprintf(`services:
  - {namespace: bench, name: bulk, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
  - {namespace: bench, name: echo, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
`, e.backend)
	return e.start(clusterB, []string{clusterA, clusterC}, peers, svcs)
}

// startPeer starts one replica of A, which dials B.
func (e *setup) startPeer(victim *gateway) (*gateway, error) {
	peers := fmt.Sprintf("    - {name: %s, id: %q, region: %s, addrs: [%q]}\n",
		clusterB, bench.SpiffeID(clusterB), region(clusterB), victim.addr)
	return e.start(clusterA, []string{clusterB}, peers, "services: []\n")
}

// start writes a gateway's config and services file and runs it.
func (e *setup) start(cluster string, allow []string, peers, services string) (*gateway, error) {
	e.n++
	dir := filepath.Join(e.dir, fmt.Sprintf("%02d-%s", e.n, cluster))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	id := filepath.Join(e.certs, cluster)
	var bundles, tds []string
	for _, other := range allow {
		td := bench.TrustDomain(other)
		bundles = append(bundles, fmt.Sprintf("        %s: %s", td, filepath.Join(id, "bundle-"+td+".pem")))
		tds = append(tds, td)
	}
	cfg := fmt.Sprintf(`cluster: %s
region: %s
listen: %q
admin: {listen: %q, pprof: true}
log: {level: info}
discovery: {file: services.yaml}
peering:
  transport: quic   # the attacks are on QUIC; several gateways share 127.0.0.1, so no TCP listener each
  identity:
    files:
      cert_chain: %s
      key: %s
      bundles:
        %s: %s
%s
  allow: {trust_domains: [%s]}
  peers:
%s`, cluster, region(cluster), addr, admin,
		filepath.Join(id, "svid.pem"), filepath.Join(id, "svid-key.pem"),
		bench.TrustDomain(cluster), filepath.Join(id, "bundle.pem"),
		strings.Join(bundles, "\n"), strings.Join(tds, ", "), peers)
	if err := bench.WriteFiles(dir, map[string]string{"ewgw.yaml": cfg, "services.yaml": services}); err != nil {
		return nil, err
	}
	g := &gateway{cluster: cluster, addr: addr, admin: admin, dir: dir}
	g.cmd = exec.Command(e.o.ewgw, "run", "--config", filepath.Join(dir, "ewgw.yaml"))
	if err := bench.StartLogged(g.cmd, dir, "ewgw.log"); err != nil {
		return nil, err
	}
	return g, nil
}

// logTail returns the last lines of g's log, for an error message.
func (g *gateway) logTail() string {
	return bench.LogTail(g.cluster, filepath.Join(g.dir, "ewgw.log"), 8)
}

// vm returns a VmHWM or VmRSS line of /proc/PID/status in bytes.
func vm(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			var kb int64
			_, _ = fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
