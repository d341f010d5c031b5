package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// Cluster names of the two gateways, and their SPIFFE IDs as "ewgw certs"
// mints them (trust domain "<cluster>.ewgw.local", namespace and service
// account "ewgw").
const (
	clusterA = "cluster-a"
	clusterB = "cluster-b"
)

func spiffeID(cluster string) string    { return "spiffe://" + trustDomain(cluster) + "/ns/ewgw/sa/ewgw" }
func trustDomain(cluster string) string { return cluster + ".ewgw.local" }

// path is one way from the client to the backend: direct, or through
// gateway A and gateway B. A tunnel's gateways run only while it is
// measured (start, stop), so one pair's background work never lands in
// another's numbers.
type path struct {
	name         string     // "direct", "tunnel/1", ...
	connsPerPeer int        // 0 for direct
	addr         string     // where the client connects
	gws          []*gateway // A then B while started; none for direct
}

// pids returns the gateways' process ids.
func (p *path) pids() []int {
	var out []int
	for _, g := range p.gws {
		out = append(out, g.cmd.Process.Pid)
	}
	return out
}

// gateway is one "ewgw run" process.
type gateway struct {
	cluster string
	addr    string // TCP listener, and the QUIC listener's UDP port
	admin   string // metrics and pprof
	cmd     *exec.Cmd
}

// cpu returns the gateway's user+system CPU seconds so far.
func (g *gateway) cpu() float64 { return bench.CPU(g.cmd.Process.Pid) }

// stop sends SIGTERM and waits; the gateway drains (nothing is live by
// then) and exits.
func (g *gateway) stop() { bench.Stop(g.cmd, 5*time.Second) }

func (p *path) stop() {
	for _, g := range p.gws {
		g.stop()
	}
	p.gws = nil
}

// mintCerts runs "ewgw certs" for both clusters into dir/certs and returns
// that directory.
func mintCerts(bin, dir string) (string, error) {
	out := filepath.Join(dir, "certs")
	cmd := exec.Command(bin, "certs", "--out", out, "--clusters", clusterA+","+clusterB)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ewgw certs: %w\n%s", err, b)
	}
	return out, nil
}

// start starts a tunnel path's gateway B (exporting both bench services,
// endpoint the backend) and gateway A (no services, peering with B over
// QUIC with p.connsPerPeer connections), each a real "ewgw run --config"
// process, and waits until an echo passes through both. The direct path
// has nothing to start.
func (p *path) start(o options, dir, certs, backend string, client *tls.Config) error {
	if p.connsPerPeer == 0 {
		return nil
	}
	sub := filepath.Join(dir, fmt.Sprintf("cpp%d", p.connsPerPeer))
	b, err := startGateway(o, sub, certs, clusterB, p.connsPerPeer, backend, "")
	if err != nil {
		return err
	}
	a, err := startGateway(o, sub, certs, clusterA, p.connsPerPeer, "", b.addr)
	if err != nil {
		b.stop()
		return err
	}
	p.gws = []*gateway{a, b}
	p.addr = a.addr
	// A learns B's exports over the control stream after peering; the
	// first echo through A succeeds once both are done.
	if err := bench.WaitReady(p.addr, client, 15*time.Second); err != nil {
		err = fmt.Errorf("%s at %s not ready: %w%s", p.name, p.addr, err, p.logs())
		p.stop()
		return err
	}
	return nil
}

// startGateway writes one gateway's config and services file into
// dir/cluster and runs it. A non-empty backend makes it export the two bench
// services there; a non-empty peerAddr makes it dial the other cluster.
func startGateway(o options, dir, certs, cluster string, connsPerPeer int, backend, peerAddr string) (*gateway, error) {
	dir = filepath.Join(dir, cluster)
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
	other := clusterA
	if cluster == clusterA {
		other = clusterB
	}
	id := filepath.Join(certs, cluster)
	cfg := fmt.Sprintf(`cluster: %s
listen: %q
admin: {listen: %q, pprof: true}
log: {level: warn}
discovery: {file: services.yaml}
peering:
  identity:
    files:
      cert_chain: %s
      key: %s
      bundles:
        %s: %s
        %s: %s
  allow: {trust_domains: [%s]}
  conns_per_peer: %d
  peers:
    - {name: %s, id: %q, addrs: [%s]}
`, cluster, addr, admin,
		filepath.Join(id, "svid.pem"), filepath.Join(id, "svid-key.pem"),
		trustDomain(cluster), filepath.Join(id, "bundle.pem"),
		trustDomain(other), filepath.Join(id, "bundle-"+trustDomain(other)+".pem"),
		trustDomain(other), connsPerPeer, other, spiffeID(other), quoted(peerAddr))
	svcs := "services: []\n"
	if backend != "" {
		svcs = fmt.Sprintf(`services:
  - {namespace: bench, name: bulk, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
  - {namespace: bench, name: echo, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
`, backend)
	}
	if err := writeFiles(dir, map[string]string{"ewgw.yaml": cfg, "services.yaml": svcs}); err != nil {
		return nil, err
	}
	g := &gateway{cluster: cluster, addr: addr, admin: admin}
	g.cmd = exec.Command(o.ewgw, "run", "--config", filepath.Join(dir, "ewgw.yaml"))
	g.cmd.Dir = dir
	g.cmd.Env = append(os.Environ(), o.ewgwEnv...)
	g.cmd.SysProcAttr = bench.OrphanKill()
	log, err := os.Create(filepath.Join(dir, "ewgw.log"))
	if err != nil {
		return nil, err
	}
	g.cmd.Stdout, g.cmd.Stderr = log, log
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gateway %s: %w", cluster, err)
	}
	return g, nil
}

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

func writeFiles(dir string, files map[string]string) error {
	var errs []error
	for name, body := range files {
		errs = append(errs, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return errors.Join(errs...)
}

// logs returns the last lines of each gateway's log, for an error message.
func (p *path) logs() string {
	var sb strings.Builder
	for _, g := range p.gws {
		b, _ := os.ReadFile(filepath.Join(g.cmd.Dir, "ewgw.log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		fmt.Fprintf(&sb, "\n%s log:\n%s", g.cluster, strings.Join(lines[max(0, len(lines)-5):], "\n"))
	}
	return sb.String()
}
