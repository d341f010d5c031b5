package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/pipe"
	"github.com/ewgw/ewgw/internal/route"
)

// Transport carries connections to other clusters' gateways: what the
// proxy needs of peering, and all it knows of it. The gateway adapts its
// QUIC tunnel to it; another transport adds an adapter, not a change here.
type Transport interface {
	// Open opens a stream to peer for req, sends early (the ClientHello)
	// with it, and returns once the peer's gateway answered that its local
	// dial succeeded, or an error before any server byte reached us: a
	// *Refusal when the peer answered no, ErrNoConnection when no
	// connection to it is up.
	Open(ctx context.Context, peer string, req Request, early []byte) (pipe.Conn, error)
}

// Request is what an opener asks of a peer: a target, and for the peer's
// logs the server name and client address it came with. On an inbound
// stream, everything but Target is only what the peer claims.
type Request struct {
	Target        route.Target
	SNI           string
	Client        netip.AddrPort
	SourceCluster string
}

// Inbound is a stream another cluster's gateway opened, waiting for Accept
// or Refuse. Peer is what its connection proved, never what it wrote.
type Inbound interface {
	Request() Request
	Peer() audience.Peer
	// Accept tells the peer yes and returns the stream to splice.
	Accept() (pipe.Conn, error)
	// Refuse tells the peer no, with one of the Refuse* reasons.
	Refuse(reason string)
}

// Reasons a peer's stream is refused, as Inbound.Refuse gets them and as
// a Refusal carries them back. A transport maps them to its wire codes.
const (
	RefuseNotExported = string(route.ReasonNotExported) // not exported to the opener
	RefuseNoEndpoint  = reasonNoEndpoint                // no eligible endpoint
	RefuseDialFailed  = reasonDialFailed                // every attempted endpoint refused
	RefuseBusy        = reasonBusy                      // the connection budget is full
)

// Refusal is a peer's no to an Open, before any server byte.
type Refusal struct {
	Peer string
	// Reason is a bounded label: a Refuse* reason, or the transport's own
	// (shutting_down, limit, ...).
	Reason string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("stream refused by peer %s: %s", r.Peer, r.Reason)
}

// ErrNoConnection is Open's error when no connection to the peer is up.
var ErrNoConnection = errors.New("no live connection to peer")
