// Package model holds the data the gateway's parts exchange: services by
// key, what a cluster exports, and peer gateways, both as configured and as
// routing sees them. The configuration file (internal/config), the tunnel,
// routing, discovery, the import mirror and the status report all use these
// types, so no part converts one near-identical struct into another. It has
// no behaviour and imports nothing heavier than internal/audience.
package model

import (
	"time"

	"github.com/ewgw/ewgw/internal/audience"
)

// ServiceKey names a Kubernetes-style service.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String returns "namespace/name".
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Export is an exported service: one that this cluster offers to its peers,
// or that a peer cluster's gateway offers to this one.
type Export struct {
	// Peer names the peer gateway; empty for this cluster's own exports.
	Peer string
	// Service is the exported service.
	Service ServiceKey
	// Ports are its ports, the first the default.
	Ports []ExportPort
	// Audience is who may reach a local export; route.Table.Exports sets
	// it from the service. Peers' exports carry none.
	Audience audience.Audience
}

// ExportPort is an exported port and its ready endpoints in the exporting
// cluster. The JSON names are the status report's (`ewgw status`).
type ExportPort struct {
	Port  uint16 `json:"port"`
	Ready int    `json:"ready"`
}

// Peer is a peer gateway as configured: the peering.peers entries of the
// configuration file, which the tunnel dials and accepts.
//
// What a peer can and cannot influence: its cluster is this entry's name,
// bound to the identity in Expect; a peer whose hello names another cluster
// is refused. Its region, when set here, is this entry's; otherwise it is
// what the peer claims, and a peer that lies about it can move itself up
// region failover lists and take a region's weight. The ready endpoint
// counts it announces are its claim, clamped to 1,000 per port, and weigh
// it in active-active; its zone and version are shown, never used.
type Peer struct {
	// Name is the peer's cluster name, as it announces itself; the peer's
	// hello must carry the same name. It names the peer in logs, metrics
	// and the status report. Names are unique.
	Name string `yaml:"name"`
	// Region is the peer's region for routing (failover lists, weights).
	// Optional: empty uses the region the peer claims, which nothing
	// proves. Set it where a region is named in the policy.
	Region string `yaml:"region"`
	// Addrs are the peer's public "host:port" addresses (UDP for QUIC, and
	// for the TCP transport unless TCPAddrs are given), tried in turn. Empty means
	// this side never dials and waits for the peer to (a peer behind NAT,
	// say); either side's connection carries streams both ways.
	Addrs []string `yaml:"addrs"`
	// TCPAddrs are the peer's TCP transport addresses, the one at Addrs'
	// index (modulo) for each; default Addrs, as a load balancer that
	// publishes the peering port number on both protocols gives.
	TCPAddrs []string `yaml:"tcp_addrs"`
	// Expect is the SPIFFE ID ("spiffe://td/ns/ewgw/sa/ewgw") or the trust
	// domain ("td" or "spiffe://td") the peer must present; in the file it
	// is the key id. Who may connect at all is peering.allow's to decide;
	// Expect maps an authenticated connection to this peer, and a dialled
	// connection whose ID does not match is closed.
	Expect string `yaml:"id"`
}

// PeerInfo locates a peer gateway's cluster and how far away it is: the
// routing view of a peer, which the tunnel's PeerStatus carries. Name and
// Cluster are the configured peer's; Region is the configured one when
// set, else the peer's claim.
type PeerInfo struct {
	Name            string
	Cluster, Region string
	RTT             time.Duration
}
