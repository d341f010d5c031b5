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
	"github.com/ewgw/ewgw/perf/wan"
)

// Ports in the two namespaces. Each namespace is fresh, so fixed ports are
// free; client-facing listeners bind NamespaceA's link address, so the
// gateway's QUIC socket on the same address can reach NamespaceB.
const (
	portServer  = "7443"
	portHAProxy = "9443"
	portNginx   = "10443"
)

// ewgwPorts are one gateway pair's ports: the client surface (and QUIC's
// UDP socket, the same number), the TCP transport's listener, and the
// admin listeners on loopback. The two pairs run side by side, so each has
// its own.
type ewgwPorts struct {
	listen, tcp    string
	adminA, adminB string
}

// ewgwPaths are the gateway paths by name: the pair peering over QUIC,
// the pair peering over TLS over TCP (yamux streams), and a pair on the
// default transport (auto) with UDP between them dropped (noUDP), which
// must find TCP by itself.
var ewgwPaths = map[string]struct {
	transport string
	ports     ewgwPorts
	noUDP     bool
}{
	"ewgw":       {"quic", ewgwPorts{"8443", "8445", "127.0.0.1:9080", "127.0.0.1:9081"}, false},
	"ewgw-tcp":   {"tcp", ewgwPorts{"8453", "8455", "127.0.0.1:9082", "127.0.0.1:9083"}, false},
	"ewgw-noudp": {"auto", ewgwPorts{"8463", "8465", "127.0.0.1:9084", "127.0.0.1:9085"}, true},
}

// path is one way from the client to the server across the link.
type path struct {
	name  string
	addr  string  // where the client connects
	procs []*proc // NamespaceA's first, then NamespaceB's
}

// proc is one process of a path.
type proc struct {
	name string // "gateway A", "haproxy back", ...
	dir  string
	cmd  *exec.Cmd
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// pids returns the processes' ids.
func (p *path) pids() []int {
	var out []int
	for _, q := range p.procs {
		out = append(out, q.pid())
	}
	return out
}

func (p *path) stop() {
	for _, q := range p.procs {
		bench.Stop(q.cmd, 5*time.Second)
	}
}

// logs returns the last lines of each process's log, for an error message.
func (p *path) logs() string {
	var sb strings.Builder
	for _, q := range p.procs {
		sb.WriteString(bench.LogTail(q.name, filepath.Join(q.dir, "log"), 5))
	}
	return sb.String()
}

// inB runs a program in NamespaceB.
func inB(name string, args ...string) *exec.Cmd { return wan.Command(wan.NamespaceB, name, args...) }

// env is what every path shares.
type env struct {
	o      options
	dir    string
	certs  string
	server string // the server's address, in NamespaceB
	client *tls.Config
}

// startPath starts the processes of path name, B side first.
func (e *env) startPath(name string) (*path, error) {
	p := &path{name: name}
	var err error
	switch name {
	case "direct":
		p.addr = e.server
	case "ewgw", "ewgw-tcp", "ewgw-noudp":
		gw := ewgwPaths[name]
		p.addr = wan.AddrA + ":" + gw.ports.listen
		if gw.noUDP {
			err = dropUDP(gw.ports.listen)
		}
		if err == nil {
			err = e.startEwgw(p, gw.transport, gw.ports)
		}
	case "haproxy":
		p.addr = wan.AddrA + ":" + portHAProxy
		err = e.startChain(p, "haproxy", portHAProxy)
	case "nginx":
		p.addr = wan.AddrA + ":" + portNginx
		err = e.startChain(p, "nginx", portNginx)
	default:
		err = fmt.Errorf("unknown path %q", name)
	}
	if err == nil {
		began := time.Now()
		err = bench.WaitReady(p.addr, e.client, 20*time.Second)
		if err != nil {
			err = fmt.Errorf("%s at %s not ready: %w%s", name, p.addr, err, p.logs())
		} else if name == "ewgw-noudp" {
			fmt.Fprintf(os.Stderr, "%s: first call served %v after the gateways started\n", name, time.Since(began).Round(time.Millisecond))
		}
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// procDir makes the directory of one process of p: dir/p.name/label.
func (e *env) procDir(p *path, label string) (string, error) {
	dir := filepath.Join(e.dir, p.name, strings.ReplaceAll(label, " ", "-"))
	return dir, os.MkdirAll(dir, 0o755)
}

// start runs cmd as the process label of p, in dir (from procDir), after
// writing files there.
func (e *env) start(p *path, label, dir string, cmd *exec.Cmd, files map[string]string) error {
	if err := bench.WriteFiles(dir, files); err != nil {
		return err
	}
	if err := bench.StartLogged(cmd, dir, "log"); err != nil {
		return err
	}
	q := &proc{name: label, dir: dir, cmd: cmd}
	// A's processes come first in procs, whatever the start order.
	if strings.HasSuffix(label, " A") || strings.HasSuffix(label, " front") {
		p.procs = append([]*proc{q}, p.procs...)
	} else {
		p.procs = append(p.procs, q)
	}
	return nil
}

// dropUDP drops, in NamespaceA (where this process runs), every UDP
// datagram to or from the gateway pair's QUIC port: the link carries their
// TCP and nothing of their QUIC. The namespaces are fresh for each run.
func dropUDP(port string) error {
	for _, dir := range []string{"--dport", "--sport"} {
		chain := "OUTPUT"
		if dir == "--sport" {
			chain = "INPUT"
		}
		out, err := exec.Command("iptables-legacy", "-A", chain, "-p", "udp", dir, port, "-j", "DROP").CombinedOutput()
		if err != nil {
			return fmt.Errorf("drop UDP %s %s: %w: %s", dir, port, err, out)
		}
	}
	return nil
}

// startEwgw starts gateway B (exporting the bench services, endpoint the
// server) and gateway A (peering with B across the link over transport,
// quic or tcp), with -conns-per-peer connections between them. Both the
// QUIC socket and the TCP transport's listener are on the link addresses,
// so the emulator carries either with the same delay, rate and loss.
func (e *env) startEwgw(p *path, transport string, ports ewgwPorts) error {
	gws := []bench.Gateway{
		{Cluster: bench.ClusterB, Listen: wan.AddrB + ":" + ports.listen, Admin: ports.adminB, Backend: e.server,
			TCPListen: wan.AddrB + ":" + ports.tcp},
		{Cluster: bench.ClusterA, Listen: p.addr, Admin: ports.adminA, TCPListen: wan.AddrA + ":" + ports.tcp,
			PeerAddr: wan.AddrB + ":" + ports.listen, PeerTCPAddr: wan.AddrB + ":" + ports.tcp},
	}
	for _, g := range gws {
		g.Certs, g.ConnsPerPeer, g.Transport = e.certs, e.o.cpp, transport
		launch, label := inB, "gateway B"
		if g.Cluster == bench.ClusterA {
			launch, label = exec.Command, "gateway A"
		}
		dir, err := e.procDir(p, label)
		if err != nil {
			return err
		}
		if err := g.WriteConfig(dir); err != nil {
			return err
		}
		cmd := launch(e.o.ewgw, "run", "--config", filepath.Join(dir, "ewgw.yaml"))
		cmd.Env = append(os.Environ(), e.o.ewgwEnv...)
		if err := e.start(p, label, dir, cmd, nil); err != nil {
			return err
		}
	}
	return nil
}

// startChain starts a TCP passthrough chain of kind (haproxy or nginx): the
// back proxy in NamespaceB routing by SNI to the server, the front proxy in
// NamespaceA routing by SNI to the back one across the link.
func (e *env) startChain(p *path, kind, port string) error {
	back := wan.AddrB + ":" + port
	for _, end := range []struct {
		label            string
		launch           bench.Launcher
		listen, upstream string
	}{
		{kind + " back", inB, back, e.server},
		{kind + " front", exec.Command, p.addr, back},
	} {
		dir, err := e.procDir(p, end.label)
		if err != nil {
			return err
		}
		var cmd *exec.Cmd
		var files map[string]string
		if kind == "haproxy" {
			cmd = end.launch("haproxy", "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
			files = map[string]string{"haproxy.cfg": bench.HAProxyConfig(end.listen, end.upstream)}
		} else {
			cmd = end.launch("nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
			files = map[string]string{"nginx.conf": bench.NginxConfig(dir, end.listen, end.upstream)}
		}
		if err := e.start(p, end.label, dir, cmd, files); err != nil {
			return err
		}
	}
	return nil
}
