package gateway

import (
	"context"
	"errors"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/pipe"
	"github.com/ewgw/ewgw/internal/proxy"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/tunnel"
)

// quicTransport is the QUIC tunnel as the proxy's Transport, and the proxy
// as the tunnel's Handler: the one place that knows both. The tunnel and
// the proxy each need the other, so tun is set once both exist, before the
// tunnel serves.
type quicTransport struct {
	cluster string
	tun     *tunnel.Tunnel
	proxy   *proxy.Proxy
}

// Open implements proxy.Transport.
func (q *quicTransport) Open(ctx context.Context, peer string, req proxy.Request, early []byte) (pipe.Conn, error) {
	h := tunnel.Header{
		Namespace: req.Target.Service.Namespace, Name: req.Target.Service.Name, Port: req.Target.Port,
		SNI: req.SNI, Client: req.Client, SourceCluster: q.cluster,
	}
	s, err := q.tun.Open(ctx, peer, h, early)
	var re *tunnel.RefusedError
	switch {
	case err == nil:
		return s, nil
	case errors.As(err, &re):
		return nil, &proxy.Refusal{Peer: re.Peer, Reason: re.Code.String()}
	case errors.Is(err, tunnel.ErrNoConnection):
		return nil, errors.Join(proxy.ErrNoConnection, err)
	}
	return nil, err
}

// HandleStream implements tunnel.Handler.
func (q *quicTransport) HandleStream(ctx context.Context, in *tunnel.Inbound) {
	q.proxy.HandleStream(ctx, quicInbound{in})
}

// quicInbound is a tunnel stream as the proxy's Inbound.
type quicInbound struct{ in *tunnel.Inbound }

func (i quicInbound) Request() proxy.Request {
	h := i.in.Header
	return proxy.Request{
		Target: route.Target{Service: model.ServiceKey{Namespace: h.Namespace, Name: h.Name}, Port: h.Port},
		SNI:    h.SNI, Client: h.Client, SourceCluster: h.SourceCluster,
	}
}

// Peer is the configured peer the connection's SPIFFE ID matched, and the
// ID.
func (i quicInbound) Peer() audience.Peer {
	return i.in.Peer
}

func (i quicInbound) Accept() (pipe.Conn, error) { return i.in.Accept() }

// refusalCodes maps the proxy's refusal reasons to the tunnel's codes.
var refusalCodes = map[string]tunnel.ErrorCode{
	proxy.RefuseNotExported: tunnel.CodeNotExported,
	proxy.RefuseNoEndpoint:  tunnel.CodeNoEndpoint,
	proxy.RefuseDialFailed:  tunnel.CodeDialFailed,
	proxy.RefuseBusy:        tunnel.CodeBusy,
}

func (i quicInbound) Refuse(reason string) {
	code, ok := refusalCodes[reason]
	if !ok {
		code = tunnel.CodeInternal
	}
	_ = i.in.Refuse(code) // answered already: nothing more to say
}
