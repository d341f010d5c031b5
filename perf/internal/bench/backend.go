package bench

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ewgw/ewgw/internal/testbed"
)

// Server names the client asks for; every path routes both to the one
// backend, which picks the protocol from the name it was asked for.
const (
	NameBulk = "bulk.bench.svc.cluster.local"
	NameEcho = "echo.bench.svc.cluster.local"
)

// RunBackend is the child process: a Go TLS server on 127.0.0.1:0 that
// prints its address on stdout and serves until stdin closes or a signal
// arrives. Running it in its own process keeps its allocations and GC away
// from the client's timings.
func RunBackend(certFile, keyFile string) error {
	return RunBackendOn("127.0.0.1:0", certFile, keyFile)
}

// RunBackendOn is RunBackend listening on addr.
func RunBackendOn(addr, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load backend cert: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	b := testbed.ServeTLS(ln, cfg, serveByName)
	fmt.Println(b.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case <-sig:
	case <-stdinClosed:
	}
	ln.Close()
	return nil
}

// serveByName completes the handshake and serves the bulk protocol or echo,
// by the server name the client sent.
func serveByName(c *tls.Conn) {
	if err := c.Handshake(); err != nil {
		return
	}
	if strings.HasPrefix(c.ConnectionState().ServerName, "bulk.") {
		testbed.ServeBulk(c)
		return
	}
	// Echo: every record read is written back, until the client closes.
	io.Copy(c, c)
}

// Launcher makes the command that runs a program: exec.Command, or one that
// runs it in another network namespace.
type Launcher func(name string, args ...string) *exec.Cmd

// startBackend runs this program with launch and args (which must make it
// call RunBackend) and reads the address the child listens on.
func startBackend(launch Launcher, args ...string) (cmd *exec.Cmd, addr string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd = launch(self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = OrphanKill()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	// The child exits when its stdin closes, so it never outlives us.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start backend: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, "", fmt.Errorf("read backend address: %w", err)
	}
	return cmd, line[:len(line)-1], nil
}

// OrphanKill makes a child die with this process, even on a kill that skips
// the deferred stops.
func OrphanKill() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// FreePort returns a loopback address that was free a moment ago, for TCP
// and UDP both (a gateway binds the same port number for its QUIC listener).
func FreePort() (string, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no loopback port free for both TCP and UDP")
}

// StartTLSBackend mints a CA and a certificate for the bulk and echo names
// into dir, starts the backend child process (the calling program with
// args, then -cert and -key) and returns it, its address, and a client
// config that trusts only that CA.
func StartTLSBackend(dir string, args ...string) (cmd *exec.Cmd, addr string, client *tls.Config, err error) {
	return StartTLSBackendWith(exec.Command, dir, args...)
}

// StartTLSBackendWith is StartTLSBackend with the child started by launch.
func StartTLSBackendWith(launch Launcher, dir string, args ...string) (cmd *exec.Cmd, addr string, client *tls.Config, err error) {
	ca, err := testbed.NewCA("perf CA")
	if err != nil {
		return nil, "", nil, err
	}
	cert, err := ca.Server(NameBulk, NameEcho)
	if err != nil {
		return nil, "", nil, err
	}
	certFile, keyFile, err := testbed.WriteFiles(dir, cert)
	if err != nil {
		return nil, "", nil, err
	}
	cmd, addr, err = startBackend(launch, append(args, "-cert", certFile, "-key", keyFile)...)
	if err != nil {
		return nil, "", nil, err
	}
	return cmd, addr, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}, nil
}

// TempDir makes a temporary directory for a run's certificates, configs
// and logs. cleanup removes it, unless keep, in which case its name is
// printed so it can be read after the run.
func TempDir(prefix string, keep bool) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "certificates, configs and logs in", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// Stop sends cmd SIGTERM, waits up to grace for it to exit, then kills it.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}
