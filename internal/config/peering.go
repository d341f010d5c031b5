package config

import (
	"cmp"
	"fmt"
	"net"
	"strings"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/proxy"
	"github.com/ewgw/ewgw/internal/tunnel/param"
)

// Peering configures peering with other clusters' gateways, over QUIC and
// the TCP transport. It is off when the section is absent.
type Peering struct {
	// Listen is the peering surface's QUIC listener (UDP), the surface to
	// publish on the internet with TCPListen, where nothing is reachable
	// without an authenticated, allowed peer identity. Default: the host
	// and port number of the client surface's Listen.
	Listen string `yaml:"listen"`
	// TCPListen is the TCP transport's address. Default: Listen's host,
	// port DefaultTCPListenPort, since the client surface usually has
	// Listen's port number on TCP. A dialler tries TCP on the host:port
	// it dials QUIC on (unless the peer entry names tcp_addrs), so the
	// load balancer publishes the peering port number on TCP with this
	// port as its target (deploy/base/service.yaml, ewgw-peering).
	TCPListen string `yaml:"tcp_listen"`
	// Transport is what peers are dialled over: "auto" (QUIC, falling
	// back to TCP per peer when no QUIC handshake completes within
	// fallback_delay, and back to QUIC once it gets through), "quic" or
	// "tcp" (TLS over TCP, for networks and load balancers that carry no
	// UDP). A gateway accepts the transports it dials. Default auto.
	Transport string `yaml:"transport"`
	// FallbackDelay is how long an auto dial waits for QUIC before
	// trying TCP alongside. Default 300ms.
	FallbackDelay Duration `yaml:"fallback_delay"`
	// Identity is this gateway's SPIFFE identity source; required.
	Identity Identity `yaml:"identity"`
	// Federate exchanges trust bundles with peers over the peering
	// connections: this gateway announces its own trust domain's bundle to
	// each peer and on every change, and takes a peer's announced bundle
	// for the peer's own trust domain in place of the configured one
	// (which it starts from). For the files and ca identity sources; with
	// the Workload API, SPIRE federates. A gateway of a release without
	// federation closes a connection that carries a bundle, so turn it on
	// once every peer runs one that has it. Default false.
	Federate bool `yaml:"federate"`
	// Allow says which peers may connect; at least one entry is required.
	// A peer passes when its trust domain is listed, or its ID is, or its ID
	// matches a pattern ("*" matches one path segment).
	Allow Allow `yaml:"allow"`
	// Peers are the gateways this one peers with. A connection from a
	// gateway that is allowed but matches no peer here is closed.
	Peers []model.Peer `yaml:"peers"`
	// ConnsPerPeer is the number of QUIC connections dialled to each peer,
	// each from its own UDP socket, so one core is not the ceiling and
	// concurrent transfers do not share one congestion window. Default 8.
	ConnsPerPeer int `yaml:"conns_per_peer"`
	// KeepAlive is the QUIC keep-alive period. Default 10s (UDP NAT state
	// often expires after 30s).
	KeepAlive Duration `yaml:"keepalive"`
	// OpenTimeout bounds opening a stream to one peer, including the peer's
	// dial of its local endpoints; then the next peer is tried. Default 10s.
	OpenTimeout Duration `yaml:"open_timeout"`
	// IdleTimeout closes a silent QUIC connection. Default 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Lease is how long a peer's catalogue outlives silence on its control
	// stream; refreshes go out every quarter lease. Default 2s.
	Lease Duration `yaml:"lease"`
	// StatelessResetKeyFile holds 32 secret bytes that stay the same across
	// restarts, so a restarted gateway can reset its peers' stale
	// connections at once (RFC 9000 §10.3). Default: a random key per run.
	StatelessResetKeyFile string `yaml:"stateless_reset_key_file"`

	// Budgets for what one peer can make this gateway hold. A peer that
	// goes over one has its connection closed, counted
	// (ewgw_tunnel_peer_refusals_total), logged at info and shown in
	// `ewgw status`.

	// MaxImportedServices caps the services one peer may announce.
	// Default 20,000 (param.DefaultMaxImportedServices).
	MaxImportedServices int `yaml:"max_imported_services"`
	// MaxImportedBytes caps the size of one peer's catalogue: namespace
	// and name bytes plus 6 per port. Default 2 MiB
	// (param.DefaultMaxImportedBytes).
	MaxImportedBytes int `yaml:"max_imported_bytes"`
	// MaxStreamsPerConn caps the concurrent streams a peer may open on one
	// QUIC connection; more wait for one to end. Default 1024
	// (param.DefaultMaxIncomingStreams). Streams from peers also count
	// against max_connections.
	MaxStreamsPerConn int `yaml:"max_streams_per_conn"`
	// MaxConnsPerPeerIn caps the QUIC connections one peer identity may
	// have dialled here at once; more are closed. Default twice
	// conns_per_peer.
	MaxConnsPerPeerIn int `yaml:"max_conns_per_peer_in"`

	// Handshake admission on the peering surface (see internal/tunnel's
	// admission.go). RetryAbove is the number of handshakes in flight
	// from which a new one must first prove its source address with a
	// QUIC Retry: default 64, -1 always. MaxHandshakes caps handshakes in
	// flight (default 256) and MaxHandshakesPerSource those from one
	// proven address (default 32); more are refused.
	RetryAbove             int `yaml:"retry_above"`
	MaxHandshakes          int `yaml:"max_handshakes"`
	MaxHandshakesPerSource int `yaml:"max_handshakes_per_source"`
}

// Identity selects the SVID source: exactly one of the three.
type Identity struct {
	// WorkloadAPI reads SVIDs from a SPIFFE Workload API (a SPIRE agent).
	WorkloadAPI *WorkloadAPI `yaml:"workload_api"`
	// Files reads PEM files, reloaded when they change.
	Files *IdentityFiles `yaml:"files"`
	// CA issues the gateway's own SVID from its cluster's CA.
	CA *IdentityCA `yaml:"ca"`
}

// IdentityCA is the cluster's CA the gateway issues its own short-lived
// SVID from, in memory, renewed at half its life (certs/README.md, "The
// gateway as its own issuer"); paths are relative to the config file, and
// all of them are re-read when they change.
type IdentityCA struct {
	// CertChain is the CA certificate followed by its issuers, e.g.
	// cert-chain.pem of the Secret ewgw-ca.
	CertChain string `yaml:"cert_chain"`
	// Key is the CA's private key, e.g. ca-key.pem.
	Key string `yaml:"key"`
	// Bundles maps each trusted trust domain to its roots' PEM file.
	Bundles map[string]string `yaml:"bundles"`
	// ID is the SPIFFE ID to issue. Default
	// spiffe://<the CA's trust domain>/ns/<POD_NAMESPACE>/sa/<POD_SERVICE_ACCOUNT>,
	// each variable defaulting to ewgw.
	ID string `yaml:"id"`
	// TTL is the SVID's lifetime, at least 1s. Default 24h
	// (certgen.DefaultSVIDTTL).
	TTL Duration `yaml:"ttl"`
}

// WorkloadAPI locates the Workload API.
type WorkloadAPI struct {
	// Socket is "unix:///path" or "tcp://ip:port". Default: the
	// SPIFFE_ENDPOINT_SOCKET environment variable.
	Socket string `yaml:"socket"`
}

// IdentityFiles names the PEM files of a file identity; paths are relative
// to the config file.
type IdentityFiles struct {
	// CertChain is the SVID, leaf first.
	CertChain string `yaml:"cert_chain"`
	// Key is the SVID's private key (PKCS#8, PKCS#1 or SEC1).
	Key string `yaml:"key"`
	// Bundles maps each trusted trust domain to its roots' PEM file.
	Bundles map[string]string `yaml:"bundles"`
}

// Allow lists the peers allowed to connect.
type Allow struct {
	TrustDomains []string `yaml:"trust_domains"`
	IDs          []string `yaml:"ids"`
	IDPatterns   []string `yaml:"id_patterns"`
}

func (p *Peering) applyDefaults() {
	// The tunnel's own defaults, so the two cannot drift apart.
	p.ConnsPerPeer = cmp.Or(p.ConnsPerPeer, param.DefaultConnsPerPeer)
	p.KeepAlive = cmp.Or(p.KeepAlive, Duration(param.DefaultKeepAlivePeriod))
	p.IdleTimeout = cmp.Or(p.IdleTimeout, Duration(param.DefaultMaxIdleTimeout))
	p.OpenTimeout = cmp.Or(p.OpenTimeout, Duration(proxy.DefaultOpenTimeout))
	p.Lease = cmp.Or(p.Lease, Duration(param.DefaultLease))
	p.Transport = cmp.Or(p.Transport, string(param.TransportAuto))
	p.FallbackDelay = cmp.Or(p.FallbackDelay, Duration(param.DefaultFallbackDelay))
	p.MaxImportedServices = cmp.Or(p.MaxImportedServices, param.DefaultMaxImportedServices)
	p.MaxImportedBytes = cmp.Or(p.MaxImportedBytes, param.DefaultMaxImportedBytes)
	p.MaxStreamsPerConn = cmp.Or(p.MaxStreamsPerConn, param.DefaultMaxIncomingStreams)
	if p.Identity.CA != nil {
		p.Identity.CA.TTL = cmp.Or(p.Identity.CA.TTL, Duration(certgen.DefaultSVIDTTL))
	}
	if p.ConnsPerPeer > 0 {
		p.MaxConnsPerPeerIn = cmp.Or(p.MaxConnsPerPeerIn, 2*p.ConnsPerPeer)
	}
	p.RetryAbove = cmp.Or(p.RetryAbove, param.DefaultRetryAbove)
	p.MaxHandshakes = cmp.Or(p.MaxHandshakes, param.DefaultMaxHandshakes)
	p.MaxHandshakesPerSource = cmp.Or(p.MaxHandshakesPerSource, param.DefaultMaxHandshakesPerSource)
}

// validate reports every problem in the peering section.
func (p *Peering) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("peering."+format, args...)) }
	if p.Lease < Duration(param.MinLease) {
		add("lease: %v is below the %v minimum", p.Lease.D(), param.MinLease)
	}
	if p.Listen != "" {
		if err := checkHostPort(p.Listen); err != nil {
			add("listen: %w", err)
		}
	}
	if p.TCPListen != "" {
		if err := checkHostPort(p.TCPListen); err != nil {
			add("tcp_listen: %w", err)
		}
	}
	switch param.Transport(p.Transport) {
	case param.TransportAuto, param.TransportQUIC, param.TransportTCP:
	default:
		add("transport: %q is not auto, quic or tcp", p.Transport)
	}
	if p.FallbackDelay < 0 {
		add("fallback_delay: must not be negative")
	}
	errs = append(errs, p.Identity.validate()...)
	if p.Federate && p.Identity.WorkloadAPI != nil {
		add("federate: the workload_api identity takes federated bundles from SPIRE; federate is for files and ca")
	}
	if len(p.Allow.TrustDomains)+len(p.Allow.IDs)+len(p.Allow.IDPatterns) == 0 {
		add("allow: name at least one trust domain, id or id pattern (there is no allow-any)")
	}
	names := map[string]bool{}
	for i, peer := range p.Peers {
		if peer.Name == "" {
			add("peers[%d].name: required", i)
		} else if names[peer.Name] {
			add("peers[%d].name: duplicate %q", i, peer.Name)
		}
		names[peer.Name] = true
		for j, a := range peer.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				add("peers[%d].addrs[%d]: %w", i, j, err)
			}
		}
		for j, a := range peer.TCPAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				add("peers[%d].tcp_addrs[%d]: %w", i, j, err)
			}
		}
		if peer.Expect == "" {
			add("peers[%d].id: required (a SPIFFE ID or trust domain)", i)
		} else if !strings.HasPrefix(peer.Expect, "spiffe://") && strings.Contains(peer.Expect, "/") {
			add("peers[%d].id: %q is neither spiffe://... nor a trust domain", i, peer.Expect)
		}
	}
	if p.ConnsPerPeer < 0 || p.ConnsPerPeer > 64 {
		add("conns_per_peer: %d is outside [1, 64]", p.ConnsPerPeer)
	}
	if p.MaxImportedServices < 0 || p.MaxImportedBytes < 0 || p.MaxConnsPerPeerIn < 0 {
		add("max_imported_services, max_imported_bytes, max_conns_per_peer_in: must not be negative")
	}
	if p.RetryAbove < -1 || p.MaxHandshakes < 0 || p.MaxHandshakesPerSource < 0 {
		add("retry_above (-1 or more), max_handshakes, max_handshakes_per_source: out of range")
	}
	if p.MaxStreamsPerConn < 0 || p.MaxStreamsPerConn > 1<<16 {
		add("max_streams_per_conn: %d is outside [1, 65536]", p.MaxStreamsPerConn)
	}
	if p.KeepAlive < 0 || p.IdleTimeout < 0 || p.OpenTimeout < 0 {
		add("keepalive, idle_timeout, open_timeout: must not be negative")
	} else if p.KeepAlive >= p.IdleTimeout {
		add("keepalive (%v) must be shorter than idle_timeout (%v)", p.KeepAlive.D(), p.IdleTimeout.D())
	}
	return errs
}
