//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/ewgw/ewgw/internal/status"
)

// observation and callReport are what `workload call` prints
// (cmd/workload/call.go).
type observation struct {
	Cert     string `json:"cert"`
	Subject  string `json:"subject"`
	Verified bool   `json:"verified"`
	Body     string `json:"body"`
	Refused  bool   `json:"refused"`
	Error    string `json:"error"`
}

type callReport struct {
	Connections int     `json:"connections"`
	ElapsedMS   float64 `json:"elapsed_ms"`
	Matched     bool    `json:"matched"`
	MatchStart  int64   `json:"match_start_unix_nano"`
	PrevStart   int64   `json:"prev_start_unix_nano"`
	MatchEnd    int64   `json:"match_end_unix_nano"`
	Outcomes    []struct {
		observation
		Count int `json:"count"`
	} `json:"outcomes"`
	Last observation `json:"last"`
}

// fingerprint is the SHA-256 of a certificate, as the client reports it.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func decodeReport(out []byte) (callReport, error) {
	var r callReport
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("workload call output %q: %w", out, err)
	}
	return r, nil
}

// timing is one measured interval.
type timing struct {
	What     string
	Duration time.Duration
	Detail   string
}

// runner runs scenario steps against an env.
type runner struct {
	e     env
	file  *scenarioFile
	certs map[string]string // backend -> SHA-256 of its certificate
	// secrets hold the backends' certificates, by backend.
	secrets map[string]*corev1.Secret
	logf    func(format string, args ...any)
	// mark is when the last step that changed something finished.
	mark     time.Time
	markWhat string
	timings  []timing
	// revoked are permissions an rbac step removed, per cluster, which a
	// deploy step waits to see granted again.
	revoked map[string][]authzv1.ResourceAttributes
	// pending is the reconcile a change started, running while the next
	// step does (until steps watch the change happen, as clients would).
	pending chan error
}

// stepTimeout bounds every wait for a condition.
const stepTimeout = 30 * time.Second

func (r *runner) run(ctx context.Context, st step) error {
	if st.Until == nil {
		if err := r.settle(); err != nil {
			return err
		}
	}
	switch {
	case st.Call != nil:
		return r.call(ctx, st.Call)
	case st.Until != nil:
		return r.until(ctx, st.Until)
	case st.Split != nil:
		return r.split(ctx, st.Split)
	case st.Scale != nil:
		return r.scale(ctx, st.Scale)
	case st.Annotate != nil:
		return r.annotate(ctx, st.Annotate)
	case st.Apply != nil:
		return r.manifest(ctx, "apply", st.Apply)
	case st.Delete != nil:
		return r.manifest(ctx, "delete", st.Delete)
	case st.Decision != nil:
		return r.decision(ctx, st.Decision)
	case st.Peer != nil:
		return r.peer(ctx, st.Peer)
	case st.Mirror != nil:
		return r.mirror(ctx, st.Mirror)
	case st.Kill != nil, st.Stop != nil:
		return r.halt(ctx, st)
	case st.Start != nil:
		return r.start(ctx, st.Start)
	case st.RBAC != nil:
		return r.rbac(ctx, st.RBAC)
	case st.Deploy != nil:
		return r.deploy(ctx, st.Deploy)
	case st.Attack != nil:
		return r.attack(ctx, st.Attack)
	case st.Refuse != nil:
		return r.refuse(ctx, st.Refuse)
	case st.UDP != nil:
		if err := r.e.blockUDP(ctx, st.UDP.Blocked); err != nil {
			return err
		}
		r.changed(fmt.Sprintf("UDP blocked=%v", st.UDP.Blocked))
		return nil
	}
	return errors.New("empty step")
}

func (r *runner) changed(what string) {
	r.mark, r.markWhat = time.Now(), what
}

// reconcile lets c's controllers act on a change, in the background: the
// next step runs meanwhile if it is an until, and after it otherwise.
func (r *runner) reconcile(ctx context.Context, c *cluster) error {
	if err := r.settle(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- r.e.reconcile(ctx, c) }()
	r.pending = done
	return nil
}

// settle waits for the pending reconcile.
func (r *runner) settle() error {
	if r.pending == nil {
		return nil
	}
	err := <-r.pending
	r.pending = nil
	return err
}

// measured records the time from the last change to at, if the step
// names it.
func (r *runner) measured(what string, at time.Time, detail string) {
	if what == "" {
		return
	}
	d := at.Sub(r.mark)
	r.timings = append(r.timings, timing{What: what, Duration: d, Detail: detail})
	r.logf("measured %s: %v (%s)", what, d.Round(time.Millisecond), detail)
}

// identify names the backend that produced o, checking everything the
// client saw: no certificate at all is "refused"; otherwise the
// certificate must be a known backend's, verified for sni, and the body
// that backend's answer.
func (r *runner) identify(o observation, sni string) (string, error) {
	if o.Refused {
		return "refused", nil
	}
	for _, name := range slices.Sorted(mapKeys(r.file.Backends)) {
		if r.certs[name] != o.Cert {
			continue
		}
		want := strings.ReplaceAll(r.file.Backends[name].Body, "{sni}", sni)
		switch {
		case !o.Verified:
			return "", fmt.Errorf("%s's certificate did not verify for %s: %s", name, sni, o.Error)
		case o.Error != "":
			return "", fmt.Errorf("%s's certificate, then: %s", name, o.Error)
		case o.Body != want:
			return "", fmt.Errorf("%s's certificate, but body %q, want %q", name, o.Body, want)
		}
		return name, nil
	}
	return "", fmt.Errorf("certificate %s (%s) is no backend's; error %q", o.Cert, o.Subject, o.Error)
}

// clientArgs are the call arguments every call shares.
func (r *runner) clientArgs(ctx context.Context, c *callStep) ([]string, error) {
	addr := r.e.gatewayAddr()
	if c.Via != "" {
		var err error
		if addr, err = r.mirrorAddr(ctx, c.Via); err != nil {
			return nil, err
		}
	}
	return []string{"--addr", addr, "--sni", c.SNI, "--ca", r.e.caFile()}, nil
}

func (r *runner) call(ctx context.Context, c *callStep) error {
	args, err := r.clientArgs(ctx, c)
	if err != nil {
		return err
	}
	rep, err := r.e.call(ctx, append(args, "-n", "1"))
	if err != nil {
		return err
	}
	got, err := r.identify(rep.Last, c.SNI)
	if err != nil {
		return fmt.Errorf("%s: %w", c.SNI, err)
	}
	if got != c.Want {
		return fmt.Errorf("%s: served by %s, want %s (observed %+v)", c.SNI, got, c.Want, rep.Last)
	}
	r.logf("%s via %s: %s (%s)", c.SNI, args[1], got, describe(rep.Last))
	return nil
}

// describe summarizes what the client saw.
func describe(o observation) string {
	if o.Refused {
		return "no certificate: " + o.Error
	}
	return fmt.Sprintf("certificate %s… %q verified, body %q", o.Cert[:12], o.Subject, o.Body)
}

// until makes connections until want serves one; every connection before
// it must have been served by a known backend or refused.
func (r *runner) until(ctx context.Context, c *callStep) error {
	args, err := r.clientArgs(ctx, c)
	if err != nil {
		return err
	}
	if c.Want == "refused" {
		args = append(args, "--until-refused")
	} else {
		args = append(args, "--until-cert", r.certs[c.Want])
	}
	rep, err := r.e.call(ctx, append(args, "--timeout", stepTimeout.String()))
	if serr := r.settle(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	seen := map[string]int{}
	for _, o := range rep.Outcomes {
		got, err := r.identify(o.observation, c.SNI)
		if err != nil {
			return fmt.Errorf("%s: %w", c.SNI, err)
		}
		seen[got] += o.Count
	}
	if !rep.Matched {
		return fmt.Errorf("%s: not served by %s within %v: %v", c.SNI, c.Want, stepTimeout, seen)
	}
	if c.Clean && seen["refused"] > 0 {
		return fmt.Errorf("%s: %d of %d connections refused on the way to %s: %v", c.SNI, seen["refused"], rep.Connections, c.Want, seen)
	}
	r.logf("%s: %s at connection %d (all: %v)", c.SNI, c.Want, rep.Connections, seen)
	if d := time.Unix(0, rep.MatchEnd).Sub(r.mark); c.Within > 0 && d > time.Duration(c.Within) {
		return fmt.Errorf("%s: served by %s %v after %s, want within %v", c.SNI, c.Want, d.Round(time.Millisecond), r.markWhat, time.Duration(c.Within))
	}
	if c.Want == "refused" {
		r.measured(c.Measure, time.Unix(0, rep.MatchEnd), fmt.Sprintf("when connection %d was refused; before it: %v", rep.Connections, without(seen, c.Want, 1)))
	} else {
		r.measuredAt(c.Measure, rep, without(seen, c.Want, 1))
	}
	return nil
}

// measuredAt records the time from the last change to the start of the
// client's matching connection (the client's clock is this machine's):
// the change took effect between the start of the connection before it
// and that one, or before the first, which gives an upper bound only.
func (r *runner) measuredAt(what string, rep callReport, before map[string]int) {
	if what == "" {
		return
	}
	d := time.Unix(0, rep.MatchStart).Sub(r.mark)
	detail := fmt.Sprintf("at most: the first connection; the client started %v after the change", d.Round(time.Millisecond))
	if rep.PrevStart != 0 {
		detail = fmt.Sprintf("connection %d; the one before began at %v; before it: %v",
			rep.Connections, time.Unix(0, rep.PrevStart).Sub(r.mark).Round(time.Millisecond), before)
	}
	r.timings = append(r.timings, timing{What: what, Duration: d, Detail: detail})
	r.logf("measured %s: %v (%s)", what, d.Round(time.Millisecond), detail)
}

// without is counts less n of key, for reports.
func without(counts map[string]int, key string, n int) map[string]int {
	out := maps.Clone(counts)
	if out[key] -= n; out[key] <= 0 {
		delete(out, key)
	}
	return out
}

// split makes many connections and checks the share of each backend.
func (r *runner) split(ctx context.Context, s *splitStep) error {
	args, err := r.clientArgs(ctx, &callStep{SNI: s.SNI})
	if err != nil {
		return err
	}
	rep, err := r.e.call(ctx, append(args, "-n", strconv.Itoa(s.Connections), "-c", strconv.Itoa(s.Workers)))
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, o := range rep.Outcomes {
		got, err := r.identify(o.observation, s.SNI)
		if err != nil {
			return fmt.Errorf("%s: %w", s.SNI, err)
		}
		counts[got] += o.Count
	}
	r.logf("%s: %d connections in %.0fms: %v", s.SNI, rep.Connections, rep.ElapsedMS, counts)
	if rep.Connections != s.Connections {
		return fmt.Errorf("%d connections made, want %d", rep.Connections, s.Connections)
	}
	var bad []string
	for name, n := range counts {
		share := 100 * float64(n) / float64(s.Connections)
		if want, ok := s.Want[name]; !ok || math.Abs(share-want) > s.Tolerance {
			bad = append(bad, fmt.Sprintf("%s %.1f%% (want %v ± %v)", name, share, want, s.Tolerance))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("split %v: %s", counts, strings.Join(bad, ", "))
	}
	return nil
}

func (r *runner) scale(ctx context.Context, s *scaleStep) error {
	c, err := findCluster(r.e, s.Cluster)
	if err != nil {
		return err
	}
	ns, name, _ := strings.Cut(s.Deployment, "/")
	api := c.cs.AppsV1().Deployments(ns)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := api.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = s.Replicas
		_, err = api.UpdateScale(ctx, name, sc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	r.changed(fmt.Sprintf("scale %s to %d", s.Deployment, s.Replicas))
	return r.reconcile(ctx, c)
}

func (r *runner) annotate(ctx context.Context, a *annotateStep) error {
	c, err := findCluster(r.e, a.Cluster)
	if err != nil {
		return err
	}
	ns, name, _ := strings.Cut(a.Service, "/")
	api := c.cs.CoreV1().Services(ns)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		for k, v := range a.Set {
			if v == nil {
				delete(svc.Annotations, k)
			} else {
				svc.Annotations[k] = *v
			}
		}
		_, err = api.Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	r.changed("annotate " + a.Service)
	return r.reconcile(ctx, c)
}

// manifest applies or deletes manifests/<file> (only its objects of one
// kind, if given) with kubectl.
func (r *runner) manifest(ctx context.Context, verb string, m *manifestStep) error {
	c, err := findCluster(r.e, m.Cluster)
	if err != nil {
		return err
	}
	path := filepath.Join(suiteDir(), "manifests", m.Manifest)
	args := []string{verb, "-f", path}
	if m.Kind != "" {
		b, err := c.kubectl(ctx, nil, "get", "-f", path, "-o", "jsonpath={range .items[?(@.kind==\""+m.Kind+"\")]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		ns, name, _ := strings.Cut(strings.TrimSpace(string(b)), "/")
		args = []string{verb, "-n", ns, strings.ToLower(m.Kind) + "." + mcsGroupFor(m.Kind), name}
	}
	if verb == "delete" {
		args = append(args, "--wait=false", "--ignore-not-found")
	}
	if _, err := c.kubectl(ctx, nil, args...); err != nil {
		return err
	}
	r.changed(verb + " " + m.Manifest)
	return r.reconcile(ctx, c)
}

// mcsGroupFor qualifies a kind name for kubectl: the manifests' only
// non-core kind is the MCS ServiceExport.
func mcsGroupFor(kind string) string {
	if kind == "ServiceExport" {
		return "multicluster.x-k8s.io"
	}
	return ""
}

// poll calls cond until it returns true (with no error) or stepTimeout
// passes.
// The conditions live in other processes (gateways, apiservers), which
// offer nothing to wait on but their answers.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	return pollFor(ctx, stepTimeout, what, cond)
}

// pollFor is poll with a timeout of its own.
func pollFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (r *runner) decision(ctx context.Context, d *decisionStep) error {
	c, err := findCluster(r.e, d.Cluster)
	if err != nil {
		return err
	}
	var last *status.Decision
	err = poll(ctx, fmt.Sprintf("%s routes %s in mode %s", d.Cluster, d.SNI, d.Mode), func() (bool, error) {
		rep, err := r.e.status(ctx, c, d.SNI)
		last = rep.Decision
		return err == nil && rep.Decision != nil && rep.Decision.Mode == d.Mode, err
	})
	if err != nil {
		return fmt.Errorf("%w; last decision %+v", err, last)
	}
	r.logf("%s routes %s: mode %s, candidates %+v", d.Cluster, d.SNI, last.Mode, last.Candidates)
	return nil
}

func (r *runner) peer(ctx context.Context, p *peerStep) error {
	return r.peerWithin(ctx, p, stepTimeout)
}

// peerWithin is peer with a timeout of its own.
func (r *runner) peerWithin(ctx context.Context, p *peerStep, timeout time.Duration) error {
	c, err := findCluster(r.e, p.Cluster)
	if err != nil {
		return err
	}
	var last status.Peer
	var seenAt time.Time
	err = pollFor(ctx, timeout, fmt.Sprintf("%s sees %s up=%v", p.Cluster, p.Peer, p.Up), func() (bool, error) {
		rep, err := r.e.status(ctx, c, "")
		seenAt = time.Now()
		for _, pr := range rep.Peers {
			if pr.Name == p.Peer {
				last = pr
				return pr.Up == p.Up && onTransport(pr, p.Transport), nil
			}
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("%w (transport %q); last %+v", err, p.Transport, last)
	}
	if d := seenAt.Sub(r.mark); p.Within > 0 && d > time.Duration(p.Within) {
		return fmt.Errorf("%s saw %s up=%v transport %q %v after %s, want within %v", p.Cluster, p.Peer, p.Up, p.Transport,
			d.Round(time.Millisecond), r.markWhat, time.Duration(p.Within))
	}
	r.measured(p.Measure, seenAt, fmt.Sprintf("%s's status: %s up=%v, last error %q", p.Cluster, p.Peer, last.Up, last.LastError))
	return nil
}

// onTransport reports whether every connection to p is on transport
// ("" takes any).
func onTransport(p status.Peer, transport string) bool {
	switch transport {
	case "":
		return true
	case "tcp":
		return p.Conns > 0 && p.TCPConns == p.Conns
	case "quic":
		return p.Conns > 0 && p.TCPConns == 0
	}
	return false
}

// mirror waits until the mirror Service is there, marked as the gateway's,
// with endpoints at the gateway's pods, or until it is gone.
func (r *runner) mirror(ctx context.Context, m *mirrorStep) error {
	c, err := findCluster(r.e, m.Cluster)
	if err != nil {
		return err
	}
	ns, name, _ := strings.Cut(m.Service, "/")
	var seenAt time.Time
	err = poll(ctx, fmt.Sprintf("mirror %s present=%v in %s", m.Service, m.Present, m.Cluster), func() (bool, error) {
		svc, err := c.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		seenAt = time.Now()
		switch {
		case apierrors.IsNotFound(err):
			return !m.Present, nil
		case err != nil:
			return false, err
		case !m.Present:
			return false, nil
		case svc.Labels["app.kubernetes.io/managed-by"] != "ewgw":
			return false, fmt.Errorf("service %s is not labelled app.kubernetes.io/managed-by=ewgw: %v", m.Service, svc.Labels)
		}
		addrs, err := r.endpoints(ctx, c, ns, name)
		if err != nil || len(addrs) == 0 {
			return false, err
		}
		gws, err := gatewayIPs(ctx, c)
		for _, a := range addrs {
			host, _, _ := net.SplitHostPort(a)
			if !slices.Contains(gws, host) {
				return false, fmt.Errorf("mirror endpoint %s is not a gateway pod (%v)", a, gws)
			}
		}
		return true, err
	})
	if err != nil {
		return err
	}
	r.measured(m.Measure, seenAt, fmt.Sprintf("%s in %s", m.Service, m.Cluster))
	return nil
}

// endpoints are the ready addresses (host:port, the first port) of
// service ns/name's EndpointSlices.
func (r *runner) endpoints(ctx context.Context, c *cluster, ns, name string) ([]string, error) {
	slices, err := c.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range slices.Items {
		if len(s.Ports) == 0 || s.Ports[0].Port == nil {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*s.Ports[0].Port))))
			}
		}
	}
	return out, nil
}

// mirrorAddr is where a client resolving the mirror Service goes: its
// first ready endpoint in the client's cluster.
func (r *runner) mirrorAddr(ctx context.Context, svc string) (string, error) {
	c := r.e.clusters()[0]
	ns, name, _ := strings.Cut(svc, "/")
	addrs, err := r.endpoints(ctx, c, ns, name)
	if err != nil {
		return "", err
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("mirror %s has no ready endpoints in %s", svc, c.name)
	}
	return addrs[0], nil
}

// gatewayIPs are the addresses of c's gateway pods.
func gatewayIPs(ctx context.Context, c *cluster) ([]string, error) {
	pods, err := c.cs.CoreV1().Pods("ewgw").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=ewgw"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.Status.PodIP != "" {
			out = append(out, p.Status.PodIP)
		}
	}
	return out, nil
}

func (r *runner) halt(ctx context.Context, st step) error {
	cs, kill := st.Stop, false
	if st.Kill != nil {
		cs, kill = st.Kill, true
	}
	c, err := findCluster(r.e, cs.Cluster)
	if err != nil {
		return err
	}
	// The mark is the signal: the env's bookkeeping after it (pod
	// status, slices) is no part of the measured interval.
	r.changed(fmt.Sprintf("%s's gateway signalled (kill=%v)", c.name, kill))
	if kill {
		return r.e.kill(ctx, c)
	}
	return r.e.stop(ctx, c)
}

func (r *runner) start(ctx context.Context, s *startStep) error {
	c, err := findCluster(r.e, s.Cluster)
	if err != nil {
		return err
	}
	r.changed(c.name + "'s gateway starting")
	err = r.e.start(ctx, c)
	if s.Fails == "" {
		if err != nil {
			return err
		}
		r.logf("%s's gateway is ready %v after its start", c.name, time.Since(r.mark).Round(time.Millisecond))
		return nil
	}
	var exit *exitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("%s's gateway: want it to exit with %q, got %w", c.name, s.Fails, err)
	}
	if exit.Code == 0 || !strings.Contains(exit.Output, s.Fails) {
		return fmt.Errorf("%s's gateway exited with status %d and output %q; want non-zero and %q", c.name, exit.Code, exit.Output, s.Fails)
	}
	r.logf("%s's gateway exited with status %d: %s", c.name, exit.Code, lastLine(exit.Output, s.Fails))
	return nil
}

// lastLine is the last line of out containing s.
func lastLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
