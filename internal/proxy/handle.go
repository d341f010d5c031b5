package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/ewgw/ewgw/internal/pipe"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/sni"
)

// rejectLinger bounds how long a rejected client's leftover bytes are read
// before the close, so the close is a FIN rather than a RST.
const rejectLinger = time.Second

// handle owns one client connection from accept to close. source is the
// surface that accepted it: sourceClient or sourcePublic.
func (p *Proxy) handle(ctx context.Context, c net.Conn, source string) {
	start := time.Now()
	defer p.track(c)()
	p.m.active.Inc()
	defer p.m.active.Dec()
	var hello *sni.ClientHello
	var tg route.Target
	log := connLog{l: p.cfg.Logger, fields: func() []slog.Attr {
		a := []slog.Attr{slog.String("remote_addr", c.RemoteAddr().String())}
		if tg.Port != 0 {
			a = append(a, slog.String("sni", hello.ServerName), slog.String("service", tg.Service.String()), slog.Int("port", int(tg.Port)))
		}
		return a
	}}
	done, ok := p.sources.add(c.RemoteAddr(), p.cfg.MaxConnsPerSource)
	if !ok {
		p.reject(log, c, source, reasonSourceLimit, nil)
		return
	}
	defer done()
	hello, err := p.peekWithin(c)
	if err != nil {
		reason := sni.Reason(err)
		if errors.Is(err, errHelloBudget) {
			reason = reasonHelloBudget
		}
		p.reject(log, c, source, reason, err)
		return
	}
	p.m.hello.Observe(time.Since(start).Seconds())
	// One table snapshot serves the whole connection: name, endpoints and
	// peers all come from the same state.
	tab := p.cfg.Table()
	public := source == sourcePublic
	var reason route.Reason
	if public {
		tg, reason = tab.ResolvePublic(hello.ServerName)
	} else {
		tg, reason = tab.Resolve(hello.ServerName)
	}
	if reason != "" {
		p.reject(log, c, source, string(reason), nil)
		return
	}
	up, where, release, err := p.connect(ctx, c, tab, tg, hello, public)
	if err != nil {
		p.fail(log, c, source, err)
		return
	}
	defer release()
	p.splice(log, source, asHalf(c), up, where, len(hello.Raw), start)
}

// splice copies a connection both ways to its end, then counts and logs it.
// peeked is the number of bytes already sent upstream.
func (p *Proxy) splice(log connLog, source string, down, up pipe.Conn, where string, peeked int, start time.Time) {
	upBytes, downBytes, err := pipe.Pipe(down, up, p.cfg.HalfCloseTimeout)
	upBytes += int64(peeked)
	p.m.bytesUp.Add(float64(upBytes))
	p.m.bytesDown.Add(float64(downBytes))
	p.m.ok[source].Inc()
	log.log(slog.LevelInfo, "conn closed", slog.String("upstream", where), slog.Int64("bytes_up", upBytes),
		slog.Int64("bytes_down", downBytes), slog.Duration("duration", time.Since(start)), errAttr(err))
}

// errHelloBudget is peekWithin's refusal of a hello cut short to make room
// for a newer one under the hello budget.
var errHelloBudget = errors.New("hello evicted: the hello budget is spent")

// peekWithin is peek holding HelloMaxSize bytes of the hello budget while
// the hello is read.
func (p *Proxy) peekWithin(c net.Conn) (*sni.ClientHello, error) {
	size := cmp.Or(p.cfg.HelloMaxSize, sni.DefaultMaxSize)
	slot, ok := p.hellos.enter(c, size)
	if !ok {
		return nil, errHelloBudget
	}
	defer p.hellos.leave(slot)
	hello, err := p.peek(c)
	if err != nil && slot.evicted.Load() {
		return nil, errHelloBudget
	}
	return hello, err
}

// peek reads the ClientHello under the hello deadline.
func (p *Proxy) peek(c net.Conn) (*sni.ClientHello, error) {
	if err := c.SetReadDeadline(time.Now().Add(p.cfg.HelloTimeout)); err != nil {
		return nil, err
	}
	hello, err := sni.Peek(c, p.cfg.HelloMaxSize)
	if err != nil {
		return nil, err
	}
	return hello, c.SetReadDeadline(time.Time{})
}

var (
	errNoEndpoint = errors.New("no eligible endpoint")
	errDial       = errors.New("dial failed")
)

// dialLocal connects to one of eps, trying up to Attempts endpoints,
// least-loaded first.
func (p *Proxy) dialLocal(ctx context.Context, eps []netip.AddrPort) (net.Conn, netip.AddrPort, error) {
	var tried []netip.AddrPort
	var errs []error
	for range p.cfg.Attempts {
		ep, ok := p.cfg.Balancer.Pick(eps, tried)
		if !ok {
			break
		}
		tried = append(tried, ep)
		c, err := p.dial(ctx, ep)
		if err == nil {
			return c, ep, nil
		}
		if p.cfg.Balancer.Done(ep, err) {
			p.m.ejections.Inc()
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, netip.AddrPort{}, errNoEndpoint
	}
	return nil, netip.AddrPort{}, fmt.Errorf("%w: %w", errDial, errors.Join(errs...))
}

func (p *Proxy) dial(ctx context.Context, ep netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	start := time.Now()
	c, err := p.cfg.Dial(ctx, "tcp", ep.String())
	dur := p.m.dialOK
	if err != nil {
		dur = p.m.dialError
	}
	dur.Observe(time.Since(start).Seconds())
	return c, err
}

// reject closes a connection whose hello was bad or unroutable. Nothing was
// dialled.
func (p *Proxy) reject(log connLog, c net.Conn, source, reason string, err error) {
	p.m.conns.WithLabelValues(source, resultRejected, reason).Inc()
	log.log(slog.LevelDebug, "conn rejected", slog.String("reason", reason), errAttr(err))
	lingerClose(c)
}

// fail closes a routable connection that could not be connected upstream.
func (p *Proxy) fail(log connLog, c net.Conn, source string, err error) {
	reason := reasonDialFailed
	switch {
	case errors.Is(err, errPeers):
		reason = reasonPeerFailed
	case errors.Is(err, errNoEndpoint), errors.Is(err, errNoPeer):
		reason = reasonNoEndpoint
	}
	p.m.conns.WithLabelValues(source, resultFailed, reason).Inc()
	log.log(slog.LevelInfo, "conn failed", slog.String("reason", reason), errAttr(err))
	lingerClose(c)
}

// lingerClose sends FIN, then reads and discards what the client still sends
// for a moment before closing. Closing a socket with unread input makes the
// kernel send RST (RFC 1122 §4.2.2.13), which can destroy data in flight;
// this is the "lingering close" HTTP servers use.
func lingerClose(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite() // a failure here only means the peer is gone
	}
	c.SetReadDeadline(time.Now().Add(rejectLinger))
	io.Copy(io.Discard, io.LimitReader(c, 256<<10))
	c.Close()
}

// asHalf returns c as a pipe.Conn without wrapping a *net.TCPConn, so the
// copy between two of them can splice.
func asHalf(c net.Conn) pipe.Conn {
	if h, ok := c.(pipe.Conn); ok {
		return h
	}
	return noHalfClose{c}
}

// noHalfClose adapts a connection without CloseWrite; ending its write side
// ends it entirely.
type noHalfClose struct{ net.Conn }

// CloseWrite closes the whole connection.
func (n noHalfClose) CloseWrite() error { return n.Close() }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
