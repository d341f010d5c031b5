//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The local suite's network (README.md, "Network"): each cluster is a
// network namespace, joined to the others only through the "internet"
// namespace, which routes between them. Each cluster also has a management
// link to the root namespace, for the test process's kubectl and API
// clients; it carries no data traffic, and no cluster can reach another
// through it.
//
//	root ns ── 198.18.0.1/30 ─ mgmt0 198.18.0.2/30 ─┐  ewgw-e2e-a: apiserver and etcd on
//	                                                 │  198.18.0.2; pods on lo, 10.244.1.x
//	ewgw-e2e-net  to-a 203.0.113.1/28 ─── wan0 203.0.113.10/28 (default route)
//	(forwards)    to-b 203.0.113.17/28 ── wan0 203.0.113.20/28 (default route)
//	                                                 │  ewgw-e2e-b: the same pod addresses
//	root ns ── 198.18.0.5/30 ─ mgmt0 198.18.0.6/30 ─┘  apiserver on 198.18.0.6
//
// 203.0.113.10 and .20 are the gateways' public addresses that
// deploy/examples/cluster-{a,b} name for their peers.
const internetNS = "ewgw-e2e-net"

// site is one cluster's place in the network.
type site struct {
	ns       string // network namespace
	mgmtHost string // root side of the management link
	node     string // cluster side: the "node" address, where the apiserver listens
	wan      string // public address, CIDR
	gateway  string // the internet namespace's side, CIDR
}

var sites = map[string]site{
	"cluster-a": {ns: "ewgw-e2e-a", mgmtHost: "198.18.0.1/30", node: "198.18.0.2/30", wan: "203.0.113.10/28", gateway: "203.0.113.1/28"},
	"cluster-b": {ns: "ewgw-e2e-b", mgmtHost: "198.18.0.5/30", node: "198.18.0.6/30", wan: "203.0.113.20/28", gateway: "203.0.113.17/28"},
}

// mgmtLink is the root namespace's end of a cluster's management link.
func (s site) mgmtLink() string { return s.ns + "-m" }

// nodeIP is the node address without its prefix length.
func (s site) nodeIP() string { return strings.SplitN(s.node, "/", 2)[0] }

// removeNetwork deletes the namespaces and links of this or a previous run.
func removeNetwork() {
	for _, s := range sites {
		_ = exec.Command("ip", "link", "del", s.mgmtLink()).Run() // absent: nothing to do
		_ = exec.Command("ip", "netns", "del", s.ns).Run()
	}
	_ = exec.Command("ip", "netns", "del", internetNS).Run()
}

// setupNetwork builds the network described above.
func setupNetwork() error {
	removeNetwork()
	script := [][]string{
		{"netns", "add", internetNS},
		{"-n", internetNS, "link", "set", "lo", "up"},
	}
	for name, s := range sites {
		short := strings.TrimPrefix(name, "cluster-")
		script = append(script,
			[]string{"netns", "add", s.ns},
			[]string{"-n", s.ns, "link", "set", "lo", "up"},
			[]string{"link", "add", "wan0", "netns", s.ns, "type", "veth", "peer", "name", "to-" + short, "netns", internetNS},
			[]string{"-n", s.ns, "addr", "add", s.wan, "dev", "wan0"},
			[]string{"-n", s.ns, "link", "set", "wan0", "up"},
			[]string{"-n", internetNS, "addr", "add", s.gateway, "dev", "to-" + short},
			[]string{"-n", internetNS, "link", "set", "to-" + short, "up"},
			[]string{"-n", s.ns, "route", "add", "default", "via", strings.SplitN(s.gateway, "/", 2)[0]},
			[]string{"link", "add", s.mgmtLink(), "type", "veth", "peer", "name", "mgmt0", "netns", s.ns},
			[]string{"addr", "add", s.mgmtHost, "dev", s.mgmtLink()},
			[]string{"link", "set", s.mgmtLink(), "up"},
			[]string{"-n", s.ns, "addr", "add", s.node, "dev", "mgmt0"},
			[]string{"-n", s.ns, "link", "set", "mgmt0", "up"},
		)
	}
	for _, args := range script {
		if err := ip(args...); err != nil {
			return err
		}
	}
	// The internet routes between the clusters' links.
	return run("ip", "netns", "exec", internetNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

func ip(args ...string) error { return run("ip", args...) }

// run runs a command, returning its output in the error when it fails.
func run(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// inNetns runs fn on an OS thread switched into network namespace ns, so
// that the sockets fn creates, and the processes it starts, live there.
// The thread is switched back before it is released; if that fails, the
// thread is discarded with its goroutine. Go switches no other goroutine
// onto a locked thread, so nothing else runs in ns by accident.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer back.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
		if setns(back) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked, and the runtime ends the thread
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// dialer dials from inside network namespace ns: the kubelet stand-in's
// probes and the suite's reads of the gateways' admin endpoints.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNetns(ns, func() error {
			var derr error
			c, derr = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return derr
		})
		return c, err
	}
}

// checkIsolation asserts what the layout promises: a cluster reaches the
// other's gateway through the internet, but neither the other's apiserver
// nor its pods (the same pod addresses are its own).
func checkIsolation(ctx context.Context, from string, other site, apiPort string) error {
	dial := dialer(sites[from].ns)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if c, err := dial(ctx, "tcp", net.JoinHostPort(other.nodeIP(), apiPort)); err == nil {
		c.Close()
		return fmt.Errorf("%s reaches the other cluster's apiserver at %s", from, other.nodeIP())
	}
	return nil
}
