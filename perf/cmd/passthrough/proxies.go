package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
)

// path is one way from the client to the backend: direct, or through a
// proxy process.
type path struct {
	name  string    // "direct", "ewgw", "haproxy", "nginx"
	addr  string    // where the client connects
	admin string    // ewgw's admin address, for pprof; "" otherwise
	cmd   *exec.Cmd // nil for the direct path
}

// stop ends the proxy process, if any, and waits for it.
func (p *path) stop() { bench.Stop(p.cmd, 5*time.Second) }

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
	if err := writeFiles(dir, map[string]string{"ewgw.yaml": cfg, "services.yaml": svcs}); err != nil {
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
	cfg := fmt.Sprintf(`global
    nbthread 2
    maxconn 4096

defaults
    mode tcp
    option splice-auto
    timeout connect 3s
    timeout client 5m
    timeout server 5m

frontend fe
    bind %s
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend be if { req.ssl_sni -i %s %s }

backend be
    server s1 %s
`, addr, bench.NameBulk, bench.NameEcho, backend)
	if err := writeFiles(dir, map[string]string{"haproxy.cfg": cfg}); err != nil {
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
	cfg := fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;

events {
    worker_connections 4096;
}

stream {
    map $ssl_preread_server_name $upstream {
        %[3]s %[5]s;
        %[4]s %[5]s;
        default 127.0.0.1:9;
    }
    server {
        listen %[2]s;
        ssl_preread on;
        proxy_pass $upstream;
        proxy_half_close on;
        proxy_timeout 5m;
    }
}
`, dir, addr, bench.NameBulk, bench.NameEcho, backend)
	if err := writeFiles(dir, map[string]string{"nginx.conf": cfg}); err != nil {
		return nil, err
	}
	p := &path{name: "nginx", addr: addr}
	return p, p.run(dir, nil, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
}

// run starts the proxy process, its output going to a log file in dir.
func (p *path) run(dir string, env []string, name string, args ...string) error {
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = bench.OrphanKill()
	log, err := os.Create(filepath.Join(dir, p.name+".log"))
	if err != nil {
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	return nil
}

// ready waits up to 10s for one echo round trip through p.
func (p *path) ready(cfg *tls.Config) error {
	if err := bench.WaitReady(p.addr, cfg, 10*time.Second); err != nil {
		return fmt.Errorf("%s at %s not ready: %w", p.name, p.addr, err)
	}
	return nil
}

func writeFiles(dir string, files map[string]string) error {
	var errs []error
	for name, body := range files {
		errs = append(errs, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return errors.Join(errs...)
}
