package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cluster names of the two gateways of a tunnel, and their SPIFFE IDs as
// "ewgw certs" mints them (trust domain "<cluster>.ewgw.local", namespace
// and service account "ewgw").
const (
	ClusterA = "cluster-a"
	ClusterB = "cluster-b"
)

// SpiffeID returns the gateway identity "ewgw certs" mints for cluster.
func SpiffeID(cluster string) string { return "spiffe://" + TrustDomain(cluster) + "/ns/ewgw/sa/ewgw" }

// TrustDomain returns cluster's trust domain.
func TrustDomain(cluster string) string { return cluster + ".ewgw.local" }

// MintCerts runs "ewgw certs" (bin) for both clusters into dir/certs and
// returns that directory.
func MintCerts(bin, dir string) (string, error) { return MintClusters(bin, dir, ClusterA, ClusterB) }

// MintClusters runs "ewgw certs" (bin) for the named clusters into
// dir/certs and returns that directory: one root, an intermediate and an
// SVID per cluster, and each cluster's bundles for the others.
func MintClusters(bin, dir string, clusters ...string) (string, error) {
	out := filepath.Join(dir, "certs")
	cmd := exec.Command(bin, "certs", "--out", out, "--clusters", strings.Join(clusters, ","))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ewgw certs: %w\n%s", err, b)
	}
	return out, nil
}

// Gateway is one peered "ewgw run" of a tunnel: cluster A dials B.
type Gateway struct {
	Cluster      string // ClusterA or ClusterB
	Listen       string // TCP listener, and the QUIC listener's UDP port
	Admin        string // metrics and pprof
	Certs        string // from MintCerts
	ConnsPerPeer int
	Backend      string // non-empty: export the bench services with this endpoint
	PeerAddr     string // non-empty: dial the other cluster's gateway here
	// Transport is peering.transport: "quic", "tcp", or empty for the
	// gateway's default (auto).
	Transport string
	// TCPListen is peering.tcp_listen, the TCP transport's listener (empty:
	// the gateway's default, Listen's host with port 15445, which two
	// gateways on one host cannot share). PeerTCPAddr is the other
	// gateway's, the peer entry's tcp_addrs (empty: its addrs).
	TCPListen, PeerTCPAddr string
}

// WriteConfig writes the gateway's ewgw.yaml and services.yaml into dir.
func (g Gateway) WriteConfig(dir string) error {
	other := ClusterA
	if g.Cluster == ClusterA {
		other = ClusterB
	}
	peerAddr, tcpAddrs := "", ""
	if g.PeerAddr != "" {
		peerAddr = fmt.Sprintf("%q", g.PeerAddr)
	}
	if g.PeerTCPAddr != "" {
		tcpAddrs = fmt.Sprintf(", tcp_addrs: [%q]", g.PeerTCPAddr)
	}
	var transport strings.Builder
	if g.Transport != "" {
		fmt.Fprintf(&transport, "\n  transport: %s", g.Transport)
	}
	if g.TCPListen != "" {
		fmt.Fprintf(&transport, "\n  tcp_listen: %q", g.TCPListen)
	}
	id := filepath.Join(g.Certs, g.Cluster)
	cfg := fmt.Sprintf(`cluster: %s
listen: %q
admin: {listen: %q, pprof: true}
log: {level: warn}
discovery: {file: services.yaml}
peering:%s
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
    - {name: %s, id: %q, addrs: [%s]%s}
`, g.Cluster, g.Listen, g.Admin, transport.String(),
		filepath.Join(id, "svid.pem"), filepath.Join(id, "svid-key.pem"),
		TrustDomain(g.Cluster), filepath.Join(id, "bundle.pem"),
		TrustDomain(other), filepath.Join(id, "bundle-"+TrustDomain(other)+".pem"),
		TrustDomain(other), g.ConnsPerPeer, other, SpiffeID(other), peerAddr, tcpAddrs)
	svcs := "services: []\n"
	if g.Backend != "" {
		svcs = fmt.Sprintf(`services:
  - {namespace: bench, name: bulk, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
  - {namespace: bench, name: echo, exported: true, ports: [{port: 443, endpoints: [%[1]q]}]}
`, g.Backend)
	}
	return WriteFiles(dir, map[string]string{"ewgw.yaml": cfg, "services.yaml": svcs})
}

// HAProxyConfig is HAProxy in mode tcp on listen, sending connections for
// the bench names (req.ssl_sni) to upstream, with kernel splicing on. Its
// maxconn fits the 20,000 descriptors a process may have on the bench
// machine (HAProxy needs about 2.5 per connection).
func HAProxyConfig(listen, upstream string) string {
	return fmt.Sprintf(`global
    nbthread 2
    maxconn 7800

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
`, listen, NameBulk, NameEcho, upstream)
}

// NginxConfig is nginx's stream module on listen with ssl_preread,
// sending connections for the bench names ($ssl_preread_server_name) to
// upstream, with half-close passed through; its pid and error log go to
// dir.
func NginxConfig(dir, listen, upstream string) string {
	return fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
worker_rlimit_nofile 19500;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;

events {
    worker_connections 19000;
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
`, dir, listen, NameBulk, NameEcho, upstream)
}

// WriteFiles writes each named body into dir.
func WriteFiles(dir string, files map[string]string) error {
	var errs []error
	for name, body := range files {
		errs = append(errs, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return errors.Join(errs...)
}

// StartLogged starts cmd in dir with its output in dir/log and makes it die
// with this process.
func StartLogged(cmd *exec.Cmd, dir, log string) error {
	f, err := os.Create(filepath.Join(dir, log))
	if err != nil {
		return err
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = OrphanKill()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

// LogTail returns the last n lines of the log file at path, headed by
// name, to append to an error about the process that wrote it.
func LogTail(name, path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return fmt.Sprintf("\n%s log:\n%s", name, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
