package proxy

// The reason label of ewgw_proxy_connections_total, one table: why a
// connection or a peer's stream was rejected (nothing dialled) or failed.
// Two other packages name the reasons of their own checks, and the proxy
// counts them as they come:
//
//   - sni.Reason: the hello itself (not_tls, no_sni, truncated, too_large,
//     timeout, malformed, io_error);
//   - route.Reason: the name (no_sni, ip_literal, invalid_name,
//     not_exported, reserved, unknown_name, unknown_service, unknown_port).
//
// The proxy's own:
const (
	// Before the hello: the flood limits.
	reasonSourceLimit = "source_limit" // its address holds MaxConnsPerSource connections already
	reasonHelloBudget = "hello_budget" // cut short: newer hellos needed its share of HelloBudget

	// A routable connection, or a peer's stream, that could not be served.
	reasonNoEndpoint   = "no_endpoint"   // the service has no eligible endpoint
	reasonDialFailed   = "dial_failed"   // every attempted endpoint refused
	reasonPeerFailed   = "peer_failed"   // every peer exporting the target refused or failed
	reasonBusy         = "busy"          // a peer's stream found the connection budget (MaxConns) full
	reasonAcceptFailed = "accept_failed" // a peer's stream ended before it could be accepted
)
