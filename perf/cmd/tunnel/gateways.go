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

const (
	clusterA = bench.ClusterA
	clusterB = bench.ClusterB
)

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
	cfg := bench.Gateway{Cluster: cluster, Listen: addr, Admin: admin, Certs: certs,
		ConnsPerPeer: connsPerPeer, Backend: backend, PeerAddr: peerAddr,
		Transport: "quic"} // the QUIC tunnel's cost; both gateways share 127.0.0.1, so no TCP listener each
	if err := cfg.WriteConfig(dir); err != nil {
		return nil, err
	}
	g := &gateway{cluster: cluster, addr: addr, admin: admin}
	g.cmd = exec.Command(o.ewgw, "run", "--config", filepath.Join(dir, "ewgw.yaml"))
	g.cmd.Env = append(os.Environ(), o.ewgwEnv...)
	if err := bench.StartLogged(g.cmd, dir, "ewgw.log"); err != nil {
		return nil, err
	}
	return g, nil
}

// logs returns the last lines of each gateway's log, for an error message.
func (p *path) logs() string {
	var sb strings.Builder
	for _, g := range p.gws {
		sb.WriteString(bench.LogTail(g.cluster, filepath.Join(g.cmd.Dir, "ewgw.log"), 5))
	}
	return sb.String()
}
