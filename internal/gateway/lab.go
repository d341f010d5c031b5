package gateway

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/config"
)

// lab runs gateways of several clusters in one process on loopback, each
// from a real config file and real certificate files: the demo's engine,
// and the cross-cluster tests'.
type Lab struct {
	dir   string
	setup *certgen.Setup
	log   *slog.Logger
	// allow overrides the trust domains a cluster's gateway admits; by
	// default it admits every other lab cluster's.
	allow map[string][]string
	// extra is YAML appended to a cluster's gateway config (region, policy).
	extra map[string]string
	// kubeconfig makes a cluster's gateway discover services from a
	// Kubernetes apiserver instead of its services file.
	kubeconfig map[string]string
	// caTTL makes a cluster's gateway issue its own SVIDs, valid this
	// long, from the cluster's CA files (peering.identity.ca) instead of
	// reading svid.pem.
	caTTL map[string]time.Duration
	// workloadAPI makes a cluster's gateway take its SVID and bundles from
	// a SPIFFE Workload API at this address (peering.identity.workload_api).
	workloadAPI map[string]string
	// federate makes a cluster's gateway exchange trust bundles with its
	// peers (peering.federate).
	federate map[string]bool
	// tcpAddr is each running cluster's TCP peering address, for the
	// tcp_addrs of the peers that dial it.
	tcpAddr map[string]string
	// Transport is every gateway's peering.transport; empty leaves the
	// default (auto).
	Transport string
}

// PodNet is the lab's stand-in for a pod network: endpoints registered in
// Kubernetes must not be loopback addresses, so lab backends are registered
// at PodNet addresses (the same ones in every cluster: pod CIDRs overlap)
// and the gateways' dialer carries them to 127.0.0.1, port unchanged.
var PodNet = netip.MustParsePrefix("10.244.0.0/16")

// podAddr is the pod network address standing for a loopback backend.
func podAddr(loopback string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("10.244.0.10"), netip.MustParseAddrPort(loopback).Port())
}

// podNet dials PodNet addresses on loopback, and others as they are.
func (l *Lab) podNet(ctx context.Context, network, addr string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil && PodNet.Contains(ap.Addr()) {
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()).String()
	}
	return (&net.Dialer{KeepAlive: -1}).DialContext(ctx, network, addr)
}

// LabService is a service of one lab cluster.
type LabService struct {
	Name, Namespace string
	Port            uint16
	Endpoints       []string
	Exported        bool
	// ExportTo is the service's audience (services file export_to).
	ExportTo []string
}

// LabPeer is a peer of one lab gateway; an empty Addr waits for it to dial.
type LabPeer struct {
	Cluster string
	Addr    string
	// TCPAddr is the peer's TCP transport address; default the one the
	// running peer gateway listens on.
	TCPAddr string
}

// newLab mints identities for clusters (one shared root, a trust domain per
// cluster) and writes each cluster's files under dir/<cluster>.
func NewLab(dir string, clusters []string, log *slog.Logger) (*Lab, error) {
	setup, err := certgen.Generate(certgen.Plan{Clusters: clusters, TrustDomainTemplate: "{cluster}.ewgw.local"})
	if err != nil {
		return nil, err
	}
	for _, c := range setup.Clusters {
		files, err := c.Files("ewgw")
		if err != nil {
			return nil, err
		}
		if _, err := certgen.WriteFiles(filepath.Join(dir, c.Name), files, true); err != nil {
			return nil, err
		}
	}
	return &Lab{dir: dir, setup: setup, log: log}, nil
}

func (l *Lab) cluster(name string) (*certgen.Cluster, error) {
	for _, c := range l.setup.Clusters {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("lab: no cluster %q", name)
}

// writeConfig writes cluster's gateway config and services file and returns
// the config path. listen is "127.0.0.1:0" or a fixed address.
func (l *Lab) writeConfig(cluster, listen string, services []LabService, peers []LabPeer) (string, error) {
	c, err := l.cluster(cluster)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(l.dir, cluster)
	var sb strings.Builder
	fmt.Fprintf(&sb, "services:\n")
	for _, s := range services {
		fmt.Fprintf(&sb, "  - {namespace: %s, name: %s, exported: %t, export_to: [%s], ports: [{port: %d, endpoints: [%s]}]}\n",
			s.Namespace, s.Name, s.Exported, quoteJoin(s.ExportTo), s.Port, quoteJoin(s.Endpoints))
	}
	if len(services) == 0 {
		sb.Reset()
		sb.WriteString("services: []\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(sb.String()), 0o644); err != nil {
		return "", err
	}
	sb.Reset()
	fmt.Fprintf(&sb, "cluster: %s\nlisten: %q\nadmin: {listen: \"off\"}\n", cluster, listen)
	if kc, ok := l.kubeconfig[cluster]; ok {
		fmt.Fprintf(&sb, "discovery: {kubernetes: {kubeconfig: %q, debounce: 20ms}}\n", kc)
	} else {
		sb.WriteString("discovery: {file: services.yaml}\n")
	}
	sb.WriteString(l.extra[cluster])
	if addr, ok := l.workloadAPI[cluster]; ok {
		fmt.Fprintf(&sb, "peering:\n  identity:\n    workload_api: {socket: %q}\n", addr)
	} else if ttl, ok := l.caTTL[cluster]; ok {
		fmt.Fprintf(&sb, "peering:\n  identity:\n    ca:\n      cert_chain: %s\n      key: %s\n      ttl: %s\n      bundles:\n", certgen.FileCertChain, certgen.FileCAKey, ttl)
	} else {
		fmt.Fprintf(&sb, "peering:\n  identity:\n    files:\n      cert_chain: %s\n      key: %s\n      bundles:\n", certgen.FileSVID, certgen.FileSVIDKey)
	}
	var others []string
	_, wl := l.workloadAPI[cluster]
	for td := range c.Bundles {
		if !wl {
			fmt.Fprintf(&sb, "        %s: %s\n", td, certgen.BundleFile(c.TrustDomain, td))
		}
		if td != c.TrustDomain {
			others = append(others, td)
		}
	}
	if a, ok := l.allow[cluster]; ok {
		others = a
	}
	if l.Transport != "" {
		fmt.Fprintf(&sb, "  transport: %s\n", l.Transport)
	}
	if l.federate[cluster] {
		sb.WriteString("  federate: true\n")
	}
	fmt.Fprintf(&sb, "  tcp_listen: \"127.0.0.1:0\"\n  allow: {trust_domains: [%s]}\n  peers:\n", strings.Join(others, ", "))
	for _, p := range peers {
		pc, err := l.cluster(p.Cluster)
		if err != nil {
			return "", err
		}
		addrs := "[]"
		if p.Addr != "" {
			addrs = fmt.Sprintf("[%q]", p.Addr)
		}
		tcpAddrs := "[]"
		if a := cmp.Or(p.TCPAddr, l.tcpAddr[p.Cluster]); p.Addr != "" && a != "" {
			tcpAddrs = fmt.Sprintf("[%q]", a)
		}
		fmt.Fprintf(&sb, "    - {name: %s, id: %q, addrs: %s, tcp_addrs: %s}\n", p.Cluster, pc.ID, addrs, tcpAddrs)
	}
	path := filepath.Join(dir, "ewgw.yaml")
	return path, os.WriteFile(path, []byte(sb.String()), 0o644)
}

// start loads cluster's config like "ewgw run" does and runs the gateway
// until ctx ends; done receives its result.
func (l *Lab) Start(ctx context.Context, cluster, listen string, services []LabService, peers []LabPeer) (gw *Gateway, done <-chan error, err error) {
	path, err := l.writeConfig(cluster, listen, services, peers)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Discovery.File != "" {
		cfg.Discovery.File = filepath.Join(filepath.Dir(path), cfg.Discovery.File)
	}
	gw, err = newGateway(ctx, cfg, Options{Base: filepath.Dir(path), Logger: l.log.With("cluster", cluster), Dial: l.podNet})
	if err != nil {
		return nil, nil, err
	}
	if gw.peering != nil && gw.peering.tcp != nil {
		if l.tcpAddr == nil {
			l.tcpAddr = map[string]string{}
		}
		l.tcpAddr[cluster] = gw.peering.tcp.Addr().String()
	}
	ch := make(chan error, 1)
	go func() { ch <- gw.run(ctx) }()
	return gw, ch, nil
}

// Addr returns the client surface's address; in the lab the peering
// surface's UDP socket has the same host and port number, and its TCP
// transport a port of its own (peers' tcp_addrs).
func (gw *Gateway) Addr() string { return gw.ln.Addr().String() }

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
