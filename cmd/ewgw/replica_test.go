package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ewgw/ewgw/internal/testbed"
)

// TestFrozenReplica freezes a real gateway process: three replicas of
// cluster-b's gateway, each an "ewgw run" process, and cluster-a's gateway
// with one peering connection to each (conns_per_peer 3, one per address).
// Calls from a client through cluster-a reach cluster-b's service evenly
// over the three replicas. SIGSTOP then freezes one: its sockets stay
// open, its kernel still takes its packets, and nothing answers, as with a
// node that hangs. No call fails, and the calls spread evenly over the two
// that live, well before the frozen replica's connection runs out of lease.
// On each transport: over TCP the frozen replica's kernel still
// acknowledges what the gateway sends, so only the stream's missing answer
// tells.
func TestFrozenReplica(t *testing.T) {
	for _, transport := range []string{"quic", "tcp"} {
		t.Run(transport, func(t *testing.T) { testFrozenReplica(t, transport) })
	}
}

func testFrozenReplica(t *testing.T, transport string) {
	const calls, lease = 60, 10 * time.Second
	backend := startBulkBackend(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	mint := exec.Command(os.Args[0], "certs", "--out", certs, "--clusters", "cluster-a,cluster-b")
	mint.Env = append(os.Environ(), "EWGW_TEST_MAIN=1")
	if out, err := mint.CombinedOutput(); err != nil {
		t.Fatalf("ewgw certs: %v\n%s", err, out)
	}

	var replicas []*proc
	var addrs, tcpAddrs []string
	for i := range 3 {
		b := peered{dir: filepath.Join(dir, fmt.Sprint("b", i)), certs: certs, cluster: "cluster-b", other: "cluster-a",
			transport: transport, addr: freePort(t), tcpAddr: freePort(t), lease: lease,
			services: fmt.Sprintf("services: [{namespace: default, name: bulk, exported: true, ports: [{port: 443, endpoints: [%q]}]}]\n", backend.addr)}
		replicas = append(replicas, b.start(t))
		addrs, tcpAddrs = append(addrs, b.addr), append(tcpAddrs, b.tcpAddr)
	}
	a := peered{dir: filepath.Join(dir, "a"), certs: certs, cluster: "cluster-a", other: "cluster-b",
		transport: transport, addr: freePort(t), tcpAddr: freePort(t), lease: lease, services: "services: []\n",
		peerAddrs: addrs, peerTCPAddrs: tcpAddrs}.start(t)
	deadline := time.Now().Add(20 * time.Second)
	conns := fmt.Sprintf(`ewgw_tunnel_connections{direction="out",transport=%q}`, transport)
	for a.metric(t, conns) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("cluster-a has %v peering connections over %s after 20s, want 3", a.metric(t, conns), transport)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The export reaches cluster-a with the first catalogue; wait for the
	// first call to go through.
	for {
		if err := call(a.addr, backend); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no call through cluster-a within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	spread := func(live []*proc) {
		t.Helper()
		before := make([]float64, len(live))
		for i, r := range live {
			before[i] = r.metric(t, "ewgw_tunnel_streams_accepted_total")
		}
		for i := range calls {
			if err := call(a.addr, backend); err != nil {
				t.Fatalf("call %d of %d: %v", i+1, calls, err)
			}
		}
		want := float64(calls) / float64(len(live))
		var got []float64
		for i, r := range live {
			n := r.metric(t, "ewgw_tunnel_streams_accepted_total") - before[i]
			got = append(got, n)
			if n < want*0.8 || n > want*1.2 {
				t.Errorf("replica %s served %v of %d calls, want %v ±20%%", r.addr, n, calls, want)
			}
		}
		t.Logf("calls per live replica: %v", got)
	}
	spread(replicas)

	replicas[0].signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(replicas[0].pid, syscall.SIGCONT) })
	frozen := time.Now()
	spread(replicas[1:])
	took := time.Since(frozen)
	t.Logf("%d calls with one replica frozen took %v", calls, took.Round(time.Millisecond))
	if took >= lease {
		t.Errorf("the calls took %v, as long as the lease: the frozen replica was not passed over", took)
	}
	// The frozen replica's connection was still up: opens that chose it got
	// no answer and went to another connection.
	if n := a.metric(t, "ewgw_tunnel_stream_open_retries_total"); n < 1 {
		t.Errorf("cluster-a retried %v opens on another connection, want at least 1: no call went to the frozen replica", n)
	} else {
		t.Logf("opens retried on another connection: %v", n)
	}
}

// call makes one bulk exchange (1 KiB each way) through the gateway at
// addr to backend's service.
func call(addr string, backend backendFixture) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	return testbed.Bulk(raw, backend.client, 1<<10, 1<<10)
}

// peered is one "ewgw run" peering with one other cluster.
type peered struct {
	dir, certs, cluster, other string
	transport                  string // peering.transport
	addr                       string // the client surface's TCP port and QUIC's UDP port
	tcpAddr                    string // the TCP transport's listener
	lease                      time.Duration
	services                   string // services.yaml
	// peerAddrs and peerTCPAddrs are the other cluster's addresses to
	// dial, one peering connection to each; none: it only accepts.
	peerAddrs, peerTCPAddrs []string
}

func (g peered) start(t *testing.T) *proc {
	t.Helper()
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	td := func(c string) string { return c + ".ewgw.local" }
	list := func(addrs []string) string {
		var quoted []string
		for _, a := range addrs {
			quoted = append(quoted, strconv.Quote(a))
		}
		return strings.Join(quoted, ", ")
	}
	id := filepath.Join(g.certs, g.cluster)
	write(t, filepath.Join(g.dir, "services.yaml"), g.services)
	write(t, filepath.Join(g.dir, "ewgw.yaml"), fmt.Sprintf(`cluster: %s
listen: %q
admin: {listen: 127.0.0.1:0}
discovery: {file: services.yaml}
peering:
  transport: %s
  tcp_listen: %q
  lease: %s
  conns_per_peer: %d
  identity:
    files:
      cert_chain: %s
      key: %s
      bundles: {%s: %s, %s: %s}
  allow: {trust_domains: [%s]}
  peers:
    - {name: %s, id: "spiffe://%s/ns/ewgw/sa/ewgw", addrs: [%s], tcp_addrs: [%s]}
`, g.cluster, g.addr, g.transport, g.tcpAddr, g.lease, max(1, len(g.peerAddrs)),
		filepath.Join(id, "svid.pem"), filepath.Join(id, "svid-key.pem"),
		td(g.cluster), filepath.Join(id, "bundle.pem"), td(g.other), filepath.Join(id, "bundle-"+td(g.other)+".pem"),
		td(g.other), g.other, td(g.other), list(g.peerAddrs), list(g.peerTCPAddrs)))
	return startConfig(t, filepath.Join(g.dir, "ewgw.yaml"), nil)
}

// freePort returns a loopback address whose port is free for both TCP and
// UDP (a gateway's client surface and its QUIC listener share the number).
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP in 20 tries")
	return ""
}
