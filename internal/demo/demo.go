// Package demo is ewgw's embedded default: two gateways and a TLS service
// on loopback, one cross-cluster call verified end to end, and the latency
// beside the direct path.
package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ewgw/ewgw/internal/gateway"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/testbed"
)

const (
	demoService = "web.shop.svc.cluster.local"
	demoTimeout = 30 * time.Second
)

// Run is the demo, the embedded default (make demo, cmd/ewgw-demo): it mints certificates,
// starts two gateways (cluster-a, cluster-b) and a TLS HTTP service in
// cluster-b on loopback, calls the service from cluster-a through the QUIC
// tunnel with the client verifying the service's own certificate, and
// prints what happened and the latency beside the direct path.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ewgw-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("requests", 500, "requests per latency measurement")
	verbose := fs.Bool("v", false, "show the gateways' logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 {
		return errors.New("demo: --requests must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, demoTimeout+time.Duration(*n)*20*time.Millisecond)
	defer cancel()
	dir, err := os.MkdirTemp("", "ewgw-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	d := &demo{out: stdout, n: *n}
	return d.run(ctx, dir, log)
}

type demo struct {
	out     io.Writer
	n       int
	backend *testbed.Backend
	client  *tls.Config // trusts only the service's own CA
}

func (d *demo) run(ctx context.Context, dir string, log *slog.Logger) error {
	fmt.Fprintf(d.out, "ewgw demo: two clusters on loopback, a TLS service in cluster-b, a client in cluster-a\n\n")
	l, err := gateway.NewLab(dir, []string{"cluster-a", "cluster-b"}, log)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := d.startService(); err != nil {
		return err
	}
	defer d.backend.Close()
	gctx, stop := context.WithCancel(ctx)
	var dones []<-chan error
	defer func() {
		stop()
		for _, done := range dones {
			if err := <-done; err != nil {
				fmt.Fprintf(d.out, "gateway stopped with error: %v\n", err)
			}
		}
	}()
	b, doneB, err := l.Start(gctx, "cluster-b", "127.0.0.1:0",
		[]gateway.LabService{{Name: "web", Namespace: "shop", Port: 443, Endpoints: []string{d.backend.Addr()}, Exported: true}},
		[]gateway.LabPeer{{Cluster: "cluster-a"}})
	if err != nil {
		return fmt.Errorf("start cluster-b: %w", err)
	}
	dones = append(dones, doneB)
	a, doneA, err := l.Start(gctx, "cluster-a", "127.0.0.1:0", nil, []gateway.LabPeer{{Cluster: "cluster-b", Addr: b.Addr()}})
	if err != nil {
		return fmt.Errorf("start cluster-a: %w", err)
	}
	dones = append(dones, doneA)
	tg := route.Target{Service: model.ServiceKey{Namespace: "shop", Name: "web"}, Port: 443}
	start := time.Now()
	if err := a.WaitTable(ctx, func(t *route.Table) bool { return len(t.Peers(tg)) > 0 }); err != nil {
		return fmt.Errorf("cluster-a never learned of shop/web from cluster-b: %w", err)
	}
	d.describe(a, b, time.Since(start))
	if err := d.call(a.Addr()); err != nil {
		return err
	}
	return d.measure(a.Addr())
}

// startService starts the TLS HTTP service of cluster-b, with a CA of its
// own that the gateways never see.
func (d *demo) startService() error {
	ca, err := testbed.NewCA("shop CA (cluster-b workloads)")
	if err != nil {
		return err
	}
	cert, err := ca.Server(demoService)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.backend = testbed.ServeHello(ln, &tls.Config{Certificates: []tls.Certificate{cert}}, "cluster-b")
	d.client = &tls.Config{RootCAs: ca.Pool(), ServerName: demoService}
	return nil
}

func (d *demo) describe(a, b *gateway.Gateway, peeringTook time.Duration) {
	w := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  cluster-b\tgateway %s (TCP+UDP)\t%s\texports shop/web:443\n", b.Addr(), b.Identity())
	fmt.Fprintf(w, "  cluster-a\tgateway %s (TCP+UDP)\t%s\tno local shop/web\n", a.Addr(), a.Identity())
	fmt.Fprintf(w, "  service\t%s\tin cluster-b at %s\tits own CA; the gateways hold no key for it\n", demoService, d.backend.Addr())
	w.Flush()
	for _, p := range a.Peers() {
		fmt.Fprintf(d.out, "\ncluster-a peered with %s over QUIC in %v (mutual SPIFFE auth; QUIC connections up: %d; rtt %v)\n",
			p.Name, peeringTook.Round(time.Millisecond), p.Conns, p.RTT.Round(time.Microsecond))
	}
}

// call makes one request from cluster-a and shows what the client saw.
func (d *demo) call(gateway string) error {
	fmt.Fprintf(d.out, "\ncall from cluster-a: GET https://%s/ through the gateway at %s\n", demoService, gateway)
	c := d.httpClient(gateway, false)
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + demoService + "/")
	if err != nil {
		return fmt.Errorf("cross-cluster call: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	leaf := resp.TLS.PeerCertificates[0]
	fmt.Fprintf(d.out, "  response:   %s %s", resp.Status, body)
	fmt.Fprintf(d.out, "  server cert: %s, issued by %q; verified by the client (%s, %s)\n",
		leaf.Subject.CommonName, leaf.Issuer.CommonName, tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite))
	if !strings.Contains(string(body), "hello from cluster-b") {
		return fmt.Errorf("unexpected response %q", body)
	}
	return nil
}

// httpClient returns a client that dials addr for every request; keepAlive
// false makes each request a new TCP+TLS connection.
func (d *demo) httpClient(addr string, keepAlive bool) *http.Client {
	dialer := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   d.client,
		DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
}

// measure prints new-connection and warm-request latency, direct and
// through both gateways.
func (d *demo) measure(gateway string) error {
	type row struct {
		name         string
		direct, tunl []time.Duration
	}
	var rows []row
	for _, keepAlive := range []bool{false, true} {
		r := row{name: "new connection (TCP+TLS+GET)"}
		if keepAlive {
			r.name = "warm request on one connection"
		}
		var err error
		if r.direct, err = d.sample(d.backend.Addr(), keepAlive); err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		if r.tunl, err = d.sample(gateway, keepAlive); err != nil {
			return fmt.Errorf("through the tunnel: %w", err)
		}
		rows = append(rows, r)
	}
	fmt.Fprintf(d.out, "\nlatency over %d requests each (loopback; one process runs everything):\n", d.n)
	w := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\tdirect p50\tp99\tA→QUIC→B p50\tp99\tadded p50\t\n")
	for _, r := range rows {
		dp50, dp99 := percentile(r.direct, 50), percentile(r.direct, 99)
		tp50, tp99 := percentile(r.tunl, 50), percentile(r.tunl, 99)
		fmt.Fprintf(w, "%s\t%v\t%v\t%v\t%v\t%v\t\n", r.name, us(dp50), us(dp99), us(tp50), us(tp99), us(tp50-dp50))
	}
	w.Flush()
	fmt.Fprintf(d.out, "\ndemo ok\n")
	return nil
}

// sample times d.n requests to addr.
func (d *demo) sample(addr string, keepAlive bool) ([]time.Duration, error) {
	c := d.httpClient(addr, keepAlive)
	defer c.CloseIdleConnections()
	out := make([]time.Duration, 0, d.n)
	for range d.n {
		start := time.Now()
		resp, err := c.Get("https://" + demoService + "/")
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }
