// Package param holds the tunnel's defaults for the settings that the
// configuration file exposes (the peering section), and the lease floor.
// Package tunnel applies them to zero Config fields and internal/config
// applies them to the file, so the two cannot drift apart; they live here,
// apart from package tunnel, so that reading them does not link quic-go
// into the configuration. References to Config are to tunnel.Config.
package param

import "time"

// Connections and streams.
const (
	// DefaultConnsPerPeer is Config.ConnsPerPeer's default. Each QUIC
	// connection has one congestion window; eight let eight concurrent
	// transfers back off from a loss independently, as eight TCP
	// connections would (perf/RESULTS.md: at 1 % loss, eight downloads
	// got 0.30× the HAProxy chain's throughput over 2 connections and
	// 1.22× over 8), and spread the work over eight receive loops.
	DefaultConnsPerPeer    = 8
	DefaultKeepAlivePeriod = 10 * time.Second // Config.KeepAlivePeriod; below common 30 s NAT UDP timeouts
	DefaultMaxIdleTimeout  = 30 * time.Second // Config.MaxIdleTimeout
	DefaultLease           = 2 * time.Second  // Config.Lease
	// DefaultMaxIncomingStreams is Config.MaxIncomingStreams' default
	// (quic-go's own is 100). With DefaultConnsPerPeer connections each
	// way a peer may have 8,192 concurrent streams open to this gateway
	// on its own connections, half the proxy's default connection budget;
	// a stream that has not sent its header costs a goroutine until
	// Config.HeaderTimeout.
	DefaultMaxIncomingStreams = 1024
)

// MinLease is the shortest Config.Lease, and the shortest lease a peer may
// announce: a refresh every MinLease/4 is already several per RTT on a WAN
// path, and a shorter lease would expire on ordinary loss recovery.
const MinLease = 200 * time.Millisecond

// Budgets for what one peer can make this gateway hold (see the tunnel's
// budget.go).
const (
	// DefaultMaxImportedServices is Config.MaxImportedServices' default:
	// twice the 10,000 Services per cluster that Kubernetes is tested
	// with (sig-scalability thresholds). The control protocol carries any
	// catalogue within the budget (in parts), so the default is a choice
	// for the importing cluster, not a limit of the wire: the import
	// mirror creates a Service per entry, and a peer past this many is
	// more likely broken or hostile than honest. A larger peering raises
	// it (and MaxImportedBytes); docs/performance.md gives the memory
	// each imported service costs.
	DefaultMaxImportedServices = 20_000
	// DefaultMaxImportedBytes is Config.MaxImportedBytes' default, counted
	// as the catalogue is encoded: namespace and name bytes plus 6 bytes
	// per port. 2 MiB: DefaultMaxImportedServices services average about
	// 100 bytes of names and ports each, twice what 60-character names
	// with one port need, while names cannot average 63-byte labels with
	// dozens of ports at the service cap.
	DefaultMaxImportedBytes = 2 << 20
)

// Handshake admission defaults (see the tunnel's admission.go).
const (
	// DefaultRetryAbove is Config.RetryAbove's default: a restart of this
	// gateway brings every peer's ConnsPerPeer connections back at once
	// (ten peers: 80), which should not all pay the Retry round trip, and
	// a flood past it costs the server no state.
	DefaultRetryAbove = 64
	// DefaultMaxHandshakes is Config.MaxHandshakes' default: three times
	// a ten-peer reconnect storm. Each handshake in flight holds a
	// connection with its buffers (at most about 0.4 MiB: the fork's
	// larger receive queue applies only once the handshake completed,
	// docs/performance.md), so 256 bound them to about 100 MiB.
	DefaultMaxHandshakes = 256
	// DefaultMaxHandshakesPerSource is Config.MaxHandshakesPerSource's
	// default: four peers' worth of ConnsPerPeer behind one NAT address.
	DefaultMaxHandshakesPerSource = 4 * DefaultConnsPerPeer
)

// Transport names what carries a peering connection: QUIC over UDP, or
// TLS over TCP with yamux streams. Everything above a connection —
// hellos, catalogue, lease, stream header and status — is the same on
// both.
type Transport string

// Transports.
const (
	// TransportQUIC carries streams on a QUIC connection over UDP.
	TransportQUIC Transport = "quic"
	// TransportTCP carries streams on a yamux session over TLS 1.3 over TCP.
	TransportTCP Transport = "tcp"
	// TransportAuto tries QUIC first and falls back to TCP per peer; new
	// streams go back to QUIC once it works. The default.
	TransportAuto Transport = "auto"
)

// DefaultFallbackDelay is Config.FallbackDelay's default: RFC 8305
// recommends 250 ms between attempts; a QUIC handshake across the widest
// WAN this gateway targets (80 ms RTT) takes about 1.5 RTT.
const DefaultFallbackDelay = 300 * time.Millisecond
