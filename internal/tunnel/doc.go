// Package tunnel carries TCP connections between ewgw gateways as streams
// on long-lived, mutually authenticated peering connections: QUIC, or TLS
// 1.3 over TCP with its streams multiplexed by yamux where UDP does not get
// through. It is the only importer of quic-go and of yamux.
//
// # Transports
//
// Both transports are a session (session.go): one authenticated connection
// carrying streams both ways, each stream a pstream that reads, writes,
// half-closes and resets with a code. quicSession wraps a quic-go
// connection; tcpSession (tcp.go) a yamux session over crypto/tls, with
// the reasons for yamux over HTTP/2 and the bounds that stand in for
// QUIC's connection window. Everything above the session is shared: the
// control stream and its hellos, the catalogue and its budgets, the lease,
// stream headers and status, penalties, trust rechecks and retirement,
// audiences. Neither Open's caller nor the Handler learns which transport
// carried a stream.
//
// Config.Transport picks (fallback.go): TransportAuto dials QUIC per slot
// and TCP alongside when no QUIC handshake completed within FallbackDelay
// or QUIC failed first, the first session up winning; a slot on TCP
// probes QUIC with backoff and moves to it, and a slot on QUIC that hears
// nothing for RescueAfter (or whose connection an open found silent)
// moves new streams to a TCP connection. The slot retires the connection
// it left: streams on it finish there. TransportQUIC and TransportTCP use one
// transport only, and close a connection arriving on the other with
// CodeWrongTransport once its handshake completes.
//
// # Peering
//
// A Tunnel listens on a UDP socket for QUIC and a TCP listener for the TCP
// transport (Serve; the gateway binds them to peering.listen and
// peering.tcp_listen) and dials every configured Peer that has addresses
// from ConnsPerPeer slots, each QUIC connection from its own UDP socket
// and quic.Transport so that one connection goroutine or one socket
// receive loop is not the ceiling. Either side may dial; every live
// connection carries streams both ways, so a peer behind NAT that only
// dials still receives streams.
//
// Connections on both transports use ALPN "ewgw/1", TLS 1.3 and mutual
// authentication with the caller's tls.Configs (prepareTLS; SPIFFE
// verification lives in the caller's VerifyConnection, which also runs on
// resumption). There is no 0-RTT: quic.Transport.Listen returns a
// connection, and a TCP connection starts yamux, only after the client
// certificate was verified. On TCP a client that does not offer the ALPN
// is refused before this side shows its certificate. The peer's SPIFFE ID
// (its leaf's URI SAN) maps an inbound connection to a configured Peer by
// Peer.Expect; a dialled peer whose ID does not match is closed.
//
// The dialer's first stream is the control stream. Both sides send a hello
// (cluster, region, zone, software version, lease, and the whole catalogue:
// each exported service's ports with their ready-endpoint counts at a
// generation); a connection carries data streams only after both hellos.
// A catalogue or update larger than a part (about 850 services with
// 60-character names) goes in parts that the receiver collects, within
// its budget, before applying the whole (parts.go), so any catalogue the
// budget admits travels: a peer exporting 100,000 services peers.
// SetExports then sends each connection a delta from the catalogue last
// sent on it (services added or changed, services removed), or the full
// list where that is smaller. The gateway, not the tunnel, leaves out
// services with no ready endpoint, so a service is withdrawn by the delta
// that follows its last endpoint going. Every connection carries the
// catalogue on its own; a peer's catalogue (PeerStatus.Exports) is the
// newest among its live connections, and empty when it has none.
// Connections of one run holding equal views share one copy, so memory
// per imported service does not grow with ConnsPerPeer.
//
// Each side refreshes its lease (Config.Lease, announced in the hello) on
// every connection whenever it has sent nothing for a quarter of it. A
// connection that hears nothing on its control stream for the peer's
// lease is closed with CodeLeaseExpired (ewgw_tunnel_lease_expirations_total),
// so a peer whose path went silent is down, and its catalogue gone, within
// about a lease rather than the QUIC idle timeout; one quiet for half a
// lease is marked silent and passed over by new streams until something
// arrives on it. GOAWAYs take a connection out of service (see Going
// away). Peers reports each peer's state and Changes signals when it
// changed, for whoever builds the routing table.
// Lost connections are redialled with jittered exponential backoff; the
// time from losing a peer to having it back is the
// ewgw_tunnel_redial_duration_seconds histogram and PeerStatus.LastRedial.
//
// # What a peer can make this side hold, and what it can claim
//
// An authenticated peer is still not trusted with resources (budget.go).
// Its catalogue, per connection, is capped in services
// (MaxImportedServices) and bytes (MaxImportedBytes), checked as each part
// of a hello or update arrives; each entry must name
// its service by DNS-1123 labels, with at most MaxExportPorts ports, none 0
// or repeated; ready counts are clamped to MaxReady. A peer may open at
// most MaxIncomingStreams concurrent streams per connection (at most 128
// on TCP, tcpMaxIncomingStreams), each refused
// with CodeBadHeader if its header is not complete within HeaderTimeout,
// and hold at most MaxConnsPerPeerIn connections to this side. A peer that
// breaks a rule loses the connection with a code (CodeLimit, CodeProtocol,
// CodeDenied); the reason is counted in ewgw_tunnel_peer_refusals_total,
// logged at info, and kept as a *PolicyError in PeerStatus.LastError.
// Breaking a rule (a catalogue over budget, a malformed control message
// or entry, a claim refused) also penalises the peer (penalty.go): for 1 s,
// doubling with each repeat up to 5 min, its new connections are closed
// with CodePenalty right after the handshake, before anything is read,
// and this side does not dial it; LastError says until when
// (ewgw_tunnel_peer_penalties_total). Then, until one of its hellos
// passes, it is on probation: one connection at a time may say its hello,
// and another meanwhile is closed the same way. So a hostile peer that
// reconnects to flood again costs a handshake per try, and at most one
// catalogue per penalty.
//
// The hello's cluster must be the configured peer name that the peer's
// SPIFFE ID matched, or the connection is refused; a configured
// Peer.Region wins over the region the hello claims. Trust is checked
// again while connected: Recheck closes the connections of peers that no
// longer pass (CodeRevoked), and a connection is retired ahead of the
// peer certificate's expiry and closed at it (CodeCertExpired), so the
// next handshake verifies the peer's current certificate. Retirement
// comes a quarter to a half of the certificate's life left at the
// handshake before its expiry, jittered so that a peer's connections go
// one by one; a retired connection goes away (below) and is replaced at
// once.
//
// # Going away
//
// A connection goes away when this side retires it, when the tunnel shuts
// down, or when the peer says it goes away; it then takes no new stream
// either way, and ends without losing one. quic-go cannot tell a sender
// when its stream data is acknowledged, and a close drops what is not, so
// neither side closes on its own streams alone. Each side sends two
// GOAWAYs on the control stream: stop, when it stops opening streams (the
// peer's stop is answered with one), and drained, once both stops are out
// and it carries no stream, when it has read everything the peer wrote on
// them. A stream that reaches a side after its drained is refused with
// CodeShuttingDown, and the opener moves the open to another connection
// (ewgw_tunnel_stream_open_retries_total{reason="going_away"}), as it
// does an open on a connection that went away after it was picked. A side
// that carries no stream and holds the peer's drained closes the
// connection with CodeOK: each side has read all the other wrote.
// A connection this side dialled is replaced by its dial loop as soon as
// it stops opening streams on it, while it drains (one draining
// connection per loop at a time); the peer's own connections are
// replaced by the peer, which dials again on the stop it receives. The
// peer certificate's expiry (CodeCertExpired) and, on shutdown,
// DrainTimeout bound the drain.
//
// # Opening streams (the sending gateway)
//
//	h := tunnel.Header{Namespace: "default", Name: "reviews", Port: 9080, SNI: sni, Client: clientAddr}
//	s, err := t.Open(ctx, "west", h, peekedHello)
//	var refused *tunnel.RefusedError
//	if errors.As(err, &refused) { /* refused.Code; nothing reached the client: try another peer */ }
//	up, down, err := pipe.Pipe(tcpConn, s, halfCloseTimeout)
//
// Open picks the connection: of the peer's runs (the replicas of its
// gateway behind one name, told apart by the hello's Instance) the one
// carrying the fewest streams, then that run's least loaded connection,
// ties taking turns; QUIC connections first, TCP ones only while the peer
// has no usable QUIC connection. A connection that receives nothing at all
// within a few RTTs of an open is silent: the open moves to another of the
// peer's connections, and later opens pass it over until a packet arrives
// on it, rather than waiting for its lease (silent.go). An open whose
// connection closes before the status moves likewise; the opener has not
// seen the status, so nothing from the server reached the client.
//
// Open writes the header, with the early bytes (the client's ClientHello)
// right behind it, and waits for the receiver's status, so a refusal (no
// endpoint, dial failed, not exported...) arrives before any server byte,
// and the hello is already at the receiver when its dial succeeds.
// *Stream reads, writes, half-closes (CloseWrite sends FIN), closes
// (Close: FIN and stop reading; after a failed Read or Write it resets
// instead) and aborts (Abort resets both ways with a code). Every Stream
// must end with Close or Abort; pipe.Pipe does it.
//
// # Receiving streams (the receiving gateway)
//
// Config.Handler gets each stream a peer opens, with its header already
// checked (version, lengths) and the authenticated peer. The handler checks
// that the peer may reach the exported service, dials a local endpoint, and
// then calls Inbound.Accept and pipe.Pipe, or Inbound.Refuse with a code.
// Streams from peers are routed to local endpoints only: the handler must
// never open them onward to another peer. The handler runs for the
// stream's whole life in a goroutine the Tunnel owns and waits for.
//
// A connection whose hello completes just as the peer starts shutting down
// may count as up for an instant; a stream opened on it is refused with
// CodeShuttingDown, which callers treat like any refusal.
//
// # Errors
//
// Refusals write a status frame, then reset the stream with the same
// ErrorCode, so the opener learns the code whichever arrives first. Codes
// are also used when closing connections. A QUIC close carries the
// closer's reason text; a TCP close carries its code only (yamux's GoAway,
// offset by tcpCodeBase), which the peer gets as a *ClosedError whose text
// explains the code; the closer's log has the detail.
//
// # Shutdown
//
// When Serve's context ends, the tunnel stops taking and opening streams,
// every connection goes away (see Going away), and it waits for open
// streams and for the connections to close up to DrainTimeout, then closes
// every connection left with CodeOK and returns.
package tunnel
