package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ewgw/ewgw/internal/testbed"
)

// TestMain lets the test binary act as the ewgw binary: with
// EWGW_TEST_MAIN=1 it runs main, so tests can start real gateway processes
// (and trace them) without a separate build step.
func TestMain(m *testing.M) {
	if os.Getenv("EWGW_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// proc is a gateway process and the log lines it writes.
type proc struct {
	cmd   *exec.Cmd
	pid   int    // the gateway's pid (not a wrapper's)
	addr  string // gateway listen address
	admin string // admin listen address
	// started is the "gateway started" log line.
	started map[string]any
	logs    chan map[string]any
	exit    chan error
}

// backendFixture is a bulk TLS backend and the client config that verifies
// it.
type backendFixture struct {
	addr   string
	client *tls.Config
}

func startBulkBackend(t *testing.T) backendFixture {
	t.Helper()
	ca, err := testbed.NewCA("backend CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("bulk.default.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := testbed.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}}, testbed.ServeBulk)
	t.Cleanup(b.Close)
	return backendFixture{addr: b.Addr(), client: &tls.Config{ServerName: "bulk.default.svc.cluster.local", RootCAs: ca.Pool()}}
}

// startGateway runs "ewgw run" as a child process (optionally under a
// wrapper such as strace) with one service "bulk" at backend, and waits for
// it to log its listen address.
func startGateway(t *testing.T, backend string, wrapper ...string) *proc {
	t.Helper()
	return startGatewayEnv(t, backend, nil, wrapper...)
}

// startGatewayEnv is startGateway with extra environment for the process.
func startGatewayEnv(t *testing.T, backend string, env []string, wrapper ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "services.yaml"), fmt.Sprintf(
		"services: [{namespace: default, name: bulk, exported: true, ports: [{port: 443, endpoints: [%q]}]}]\n", backend))
	write(t, filepath.Join(dir, "ewgw.yaml"), "cluster: test\nlisten: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\n"+
		"drain_timeout: 1m\ndiscovery: {file: services.yaml}\n")
	return startConfig(t, filepath.Join(dir, "ewgw.yaml"), env, wrapper...)
}

// startConfig runs "ewgw run --config config" as a child process
// (optionally under a wrapper) and waits for it to log its listen address.
func startConfig(t *testing.T, config string, env []string, wrapper ...string) *proc {
	t.Helper()
	args := append(wrapper, os.Args[0], "run", "--config", config)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), "EWGW_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan map[string]any, 100), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.logs <- line
			}
		}
		close(p.logs)
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.pid > 0 {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		for range p.logs {
		}
	})
	started := p.waitLog(t, "gateway started")
	p.started = started
	p.addr = started["listen"].(string)
	p.admin = started["admin"].(string)
	p.pid = int(started["pid"].(float64))
	return p
}

// waitLog returns the next log line with message msg.
func (p *proc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	for line := range p.logs {
		if line["msg"] == msg {
			return line
		}
	}
	t.Fatalf("gateway exited before logging %q", msg)
	return nil
}

// signal sends sig to the gateway itself.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.pid, sig); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSplice proves the TCP→TCP copy after the ClientHello peek still uses
// splice(2): it traces the gateway with strace and checks that the payload
// bytes of both directions moved through splice, not read/write.
func TestSplice(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (make deps installs it)")
	}
	be := startBulkBackend(t)
	trace := filepath.Join(t.TempDir(), "strace.out")
	gw := startGateway(t, be.addr, strace, "-f", "-qq", "-e", "trace=splice", "-o", trace)
	const size = 32 << 20
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := testbed.Bulk(c, be.client, size, size); err != nil {
		t.Fatal(err)
	}
	gw.signal(t, syscall.SIGTERM)
	if err := <-gw.exit; err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	// Go splices socket → pipe → socket, so every spliced byte appears in
	// two successful splice calls. The first 16 KiB or so of each direction
	// go through plain reads and writes (copyAuto), which the 99 % bound
	// leaves room for.
	var spliced int64
	for _, m := range regexp.MustCompile(`splice\(.*\) = (\d+)`).FindAllSubmatch(out, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		spliced += n
	}
	if want := int64(2*2*size) * 99 / 100; spliced < want {
		t.Fatalf("splice moved %d bytes, want at least %d (99 %% of 2 × %d payload bytes each way)", spliced, want, size)
	}
	t.Logf("splice(2) moved %d bytes for %d payload bytes each way", spliced, size)
}

// TestDrain sends SIGTERM while a connection is mid-exchange: the gateway
// reports not-ready, stops accepting, lets the live connection finish in
// full, then exits cleanly.
// TestProcsGovernor: "ewgw run" starts an idle gateway at one P, and a
// GOMAXPROCS in the environment wins over the governor.
func TestProcsGovernor(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing to govern")
	}
	be := startBulkBackend(t)
	gw := startGateway(t, be.addr)
	line := gw.waitLog(t, "procs governor started")
	if line["default"].(float64) < 2 {
		t.Fatalf("governor start line %v: want the runtime default of at least 2", line)
	}
	if got := gw.metric(t, "go_sched_gomaxprocs_threads"); got != 1 {
		t.Fatalf("idle governed gateway: GOMAXPROCS %v, want 1", got)
	}
	env := startGatewayEnv(t, be.addr, []string{"GOMAXPROCS=2"})
	if env.started["procs"] != "GOMAXPROCS=2 (environment)" {
		t.Fatalf("start line procs = %v, want the environment's", env.started["procs"])
	}
	if got := env.metric(t, "go_sched_gomaxprocs_threads"); got != 2 {
		t.Fatalf("GOMAXPROCS=2 in the environment: gateway at %v", got)
	}
}

// metric returns the value of an unlabelled metric from the gateway's
// /metrics.
// metric is the sum of every series of the counter or gauge name on p's
// /metrics: 0 where it has none (a vector nothing has counted yet is not
// exposed at all).
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		sum += v
	}
	return sum
}

func TestDrain(t *testing.T) {
	be := startBulkBackend(t)
	gw := startGateway(t, be.addr)
	if code := gw.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz before SIGTERM = %d", code)
	}
	// A live connection: its TLS handshake with the backend is done.
	raw, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, be.client)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	gw.signal(t, syscall.SIGTERM)
	gw.waitLog(t, "stopped accepting")
	if code := gw.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining = %d, want 503", code)
	}
	if c, err := net.Dial("tcp", gw.addr); err == nil {
		c.Close()
		t.Fatal("gateway accepted a connection while draining")
	}
	if err := testbed.BulkTLS(c, raw, 1<<20, 1<<20); err != nil {
		t.Fatalf("live connection during drain: %v", err)
	}
	if err := <-gw.exit; err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}
