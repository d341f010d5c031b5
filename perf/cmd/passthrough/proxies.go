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

// path is one way from the client to the backend: direct, or through a
// proxy process.
type path struct {
	name  string    // "direct", "ewgw", "haproxy", "nginx", "ewgw2", "haproxy2"
	addr  string    // where the client connects
	admin string    // ewgw's admin address, for pprof; "" otherwise
	cmd   *exec.Cmd // nil for the direct path
	log   string    // the proxy's output, "" for the direct path
	next  *path     // the second proxy of a two-hop chain, else nil
}

// stop ends the proxy processes, if any, and waits for them.
func (p *path) stop() {
	bench.Stop(p.cmd, 5*time.Second)
	if p.next != nil {
		p.next.stop()
	}
}

// startChain starts two proxies of one kind in a row, client → first →
// second → backend: the floor for two proxy hops on this machine, to set
// beside the tunnel's two gateways (cmd/tunnel).
func startChain(name, dir, backend string, start func(dir, upstream string) (*path, error)) (*path, error) {
	for _, d := range []string{"1", "2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	second, err := start(filepath.Join(dir, "2"), backend)
	if err != nil {
		if second != nil {
			second.stop()
		}
		return nil, err
	}
	first, err := start(filepath.Join(dir, "1"), second.addr)
	if first == nil {
		second.stop()
		return nil, err
	}
	first.name, first.next = name, second
	return first, err
}

// startEwgw writes an ewgw config and services file into dir and runs
// "ewgw run --config".
func startEwgw(bin string, env []string, dir, backend string) (*path, error) {
	addr, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`cluster: perf
listen: %q
admin:
  listen: %q
  pprof: true
log:
  level: warn
discovery:
  file: services.yaml
`, addr, admin)
	svcs := fmt.Sprintf(`services:
  - {namespace: bench, name: bulk, ports: [{port: 443, endpoints: [%q]}]}
  - {namespace: bench, name: echo, ports: [{port: 443, endpoints: [%q]}]}
`, backend, backend)
	if err := bench.WriteFiles(dir, map[string]string{"ewgw.yaml": cfg, "services.yaml": svcs}); err != nil {
		return nil, err
	}
	p := &path{name: "ewgw", addr: addr, admin: admin}
	return p, p.run(dir, env, bin, "run", "--config", filepath.Join(dir, "ewgw.yaml"))
}

// startHAProxy runs HAProxy in mode tcp, routing on req.ssl_sni, with kernel
// splicing on.
func startHAProxy(dir, backend string) (*path, error) {
	addr, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	if err := bench.WriteFiles(dir, map[string]string{"haproxy.cfg": bench.HAProxyConfig(addr, backend)}); err != nil {
		return nil, err
	}
	p := &path{name: "haproxy", addr: addr}
	return p, p.run(dir, nil, "haproxy", "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
}

// startNginx runs nginx's stream module with ssl_preread, routing on
// $ssl_preread_server_name, with half-close passed through.
func startNginx(dir, backend string) (*path, error) {
	addr, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	if err := bench.WriteFiles(dir, map[string]string{"nginx.conf": bench.NginxConfig(dir, addr, backend)}); err != nil {
		return nil, err
	}
	p := &path{name: "nginx", addr: addr}
	return p, p.run(dir, nil, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
}

// run starts the proxy process, its output going to a log file in dir.
func (p *path) run(dir string, env []string, name string, args ...string) error {
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	log := p.name + ".log"
	p.log = filepath.Join(dir, log)
	return bench.StartLogged(p.cmd, dir, log)
}

// ready waits up to 10s for one echo round trip through p.
func (p *path) ready(cfg *tls.Config) error {
	if err := bench.WaitReady(p.addr, cfg, 10*time.Second); err != nil {
		return fmt.Errorf("%s at %s not ready: %w%s", p.name, p.addr, err, p.logs())
	}
	return nil
}

// logs returns the tails of the chain's proxy logs, for an error.
func (p *path) logs() string {
	var sb strings.Builder
	for q := p; q != nil; q = q.next {
		if q.log != "" {
			sb.WriteString(bench.LogTail(q.name, q.log, 5))
		}
	}
	return sb.String()
}
