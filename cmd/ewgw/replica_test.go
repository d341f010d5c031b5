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
func TestFrozenReplica(t *testing.T) {
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
	var addrs []string
	for i := range 3 {
		addr := freePort(t)
		replicas = append(replicas, startPeered(t, filepath.Join(dir, fmt.Sprint("b", i)), certs, "cluster-b", "cluster-a", addr, nil, lease,
			fmt.Sprintf("services: [{namespace: default, name: bulk, exported: true, ports: [{port: 443, endpoints: [%q]}]}]\n", backend.addr)))
		addrs = append(addrs, addr)
	}
	a := startPeered(t, filepath.Join(dir, "a"), certs, "cluster-a", "cluster-b", freePort(t), addrs, lease, "services: []\n")
	deadline := time.Now().Add(20 * time.Second)
	for a.metric(t, "ewgw_tunnel_connections") != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("cluster-a has %v peering connections after 20s, want 3", a.metric(t, "ewgw_tunnel_connections"))
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

// startPeered runs "ewgw run" for cluster, peering over QUIC on addr (the
// client surface's TCP port and the QUIC port) with the other cluster,
// dialling it at peerAddrs (none: it only accepts).
func startPeered(t *testing.T, dir, certs, cluster, other, addr string, peerAddrs []string, lease time.Duration, services string) *proc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	td := func(c string) string { return c + ".ewgw.local" }
	var quoted []string
	for _, a := range peerAddrs {
		quoted = append(quoted, strconv.Quote(a))
	}
	id := filepath.Join(certs, cluster)
	write(t, filepath.Join(dir, "services.yaml"), services)
	write(t, filepath.Join(dir, "ewgw.yaml"), fmt.Sprintf(`cluster: %s
listen: %q
admin: {listen: 127.0.0.1:0}
discovery: {file: services.yaml}
peering:
  transport: quic
  tcp_listen: 127.0.0.1:0
  lease: %s
  conns_per_peer: %d
  identity:
    files:
      cert_chain: %s
      key: %s
      bundles: {%s: %s, %s: %s}
  allow: {trust_domains: [%s]}
  peers:
    - {name: %s, id: "spiffe://%s/ns/ewgw/sa/ewgw", addrs: [%s]}
`, cluster, addr, lease, max(1, len(peerAddrs)),
		filepath.Join(id, "svid.pem"), filepath.Join(id, "svid-key.pem"),
		td(cluster), filepath.Join(id, "bundle.pem"), td(other), filepath.Join(id, "bundle-"+td(other)+".pem"),
		td(other), other, td(other), strings.Join(quoted, ", ")))
	return startConfig(t, filepath.Join(dir, "ewgw.yaml"), nil)
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
