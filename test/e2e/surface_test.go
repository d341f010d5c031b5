//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The surface steps attack the gateways as docs/security.md says they are
// attacked: from the internet, on a gateway's public address, with no
// identity; and from inside a cluster, with names of services nobody
// exported. Every refusal must dial nothing: the gateways' dial counts
// (ewgw_proxy_dial_duration_seconds, every result) must not move.

// attackStep: from outside every cluster, TCP connections to cluster's
// public address with each name, on each port, and an unauthenticated QUIC
// handshake on its peering port.
type attackStep struct {
	Cluster string   `json:"cluster"`
	Names   []string `json:"names"`
	Ports   []int    `json:"ports"`
	// QUIC is the peering surface's UDP port.
	QUIC int `json:"quic"`
}

// refuseStep: from the client in cluster-a, each name is refused by its
// gateway, counted under reason, with nothing dialled.
type refuseStep struct {
	Names  []string `json:"names"`
	Reason string   `json:"reason"`
}

// errNoInternet is an environment without a vantage point outside every
// cluster.
var errNoInternet = errors.New("no client outside the clusters in this environment")

// errNoPath is an environment that cannot filter the path between the
// clusters; a scenario that needs it is skipped there.
var errNoPath = errors.New("no filter on the path between the clusters in this environment")

func (r *runner) attack(ctx context.Context, a *attackStep) error {
	c, err := findCluster(r.e, a.Cluster)
	if err != nil {
		return err
	}
	before, err := r.dials(ctx)
	if err != nil {
		return err
	}
	host := r.e.publicHost(c)
	for _, port := range a.Ports {
		addr := fmt.Sprintf("%s:%d", host, port)
		for _, name := range a.Names {
			out, err := r.e.outside(ctx, "call", "--addr", addr, "--sni", name, "--ca", r.e.caFile(), "-n", "1")
			if errors.Is(err, errNoInternet) {
				r.logf("attack skipped: %v", err)
				return nil
			}
			if err != nil {
				return err
			}
			rep, err := decodeReport(out)
			if err != nil {
				return err
			}
			if !rep.Last.Refused {
				return fmt.Errorf("internet → %s, sni %q: not refused (%s)", addr, name, describe(rep.Last))
			}
			r.logf("internet → %s %q: refused (%s)", addr, name, rep.Last.Error)
		}
	}
	if a.QUIC != 0 {
		noCert := func() (float64, error) {
			text, err := r.e.metrics(ctx, c)
			return metricSum(text, "ewgw_tunnel_handshake_failures_total", map[string]string{"reason": "no_cert"}), err
		}
		n0, err := noCert()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("%s:%d", host, a.QUIC)
		out, err := r.e.outside(ctx, "quic", "--addr", addr)
		if err != nil {
			return err
		}
		var q struct {
			Closed, Stream bool
			Error          string
		}
		if err := json.Unmarshal(out, &q); err != nil {
			return fmt.Errorf("workload quic: %w: %s", err, out)
		}
		if !q.Closed || q.Stream {
			return fmt.Errorf("internet → %s (QUIC, no identity): closed by the gateway %v, stream accepted %v (%s)", addr, q.Closed, q.Stream, q.Error)
		}
		r.logf("internet → %s (QUIC, no identity): closed by the gateway (%s)", addr, q.Error)
		err = poll(ctx, c.name+" counts the handshake without a certificate", func() (bool, error) {
			n, err := noCert()
			return n > n0, err
		})
		if err != nil {
			return err
		}
	}
	return r.noDials(ctx, before)
}

func (r *runner) refuse(ctx context.Context, s *refuseStep) error {
	client := r.e.clusters()[0] // the client runs in cluster-a
	before, err := r.dials(ctx)
	if err != nil {
		return err
	}
	count := func() (float64, error) {
		text, err := r.e.metrics(ctx, client)
		if err != nil {
			return 0, err
		}
		return metricSum(text, "ewgw_proxy_connections_total", map[string]string{"source": "client", "result": "rejected", "reason": s.Reason}), nil
	}
	n0, err := count()
	if err != nil {
		return err
	}
	for _, name := range s.Names {
		if err := r.call(ctx, &callStep{SNI: name, Want: "refused"}); err != nil {
			return err
		}
	}
	n1, err := count()
	if err != nil {
		return err
	}
	if got := n1 - n0; got != float64(len(s.Names)) {
		return fmt.Errorf("%s counted %v refusals with reason %s, want %d", client.name, got, s.Reason, len(s.Names))
	}
	return r.noDials(ctx, before)
}

// dials returns every gateway's count of endpoint dials.
func (r *runner) dials(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, c := range r.e.clusters() {
		text, err := r.e.metrics(ctx, c)
		if err != nil {
			return nil, err
		}
		out[c.name] = metricSum(text, "ewgw_proxy_dial_duration_seconds_count", nil)
	}
	return out, nil
}

func (r *runner) noDials(ctx context.Context, before map[string]float64) error {
	after, err := r.dials(ctx)
	if err != nil {
		return err
	}
	for name, n := range after {
		if n != before[name] {
			return fmt.Errorf("%s's gateway dialled %v endpoints during the step, want none", name, n-before[name])
		}
	}
	return nil
}

// metricSum adds up the samples of name, in the Prometheus text format,
// whose labels include every pair of want.
func metricSum(text, name string, want map[string]string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels, value := "", strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			labels, value = rest[1:end], strings.TrimSpace(rest[end+1:])
		}
		if !hasLabels(labels, want) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// hasLabels reports whether the label list `a="x",b="y"` includes want.
func hasLabels(labels string, want map[string]string) bool {
	got := map[string]string{}
	for pair := range strings.SplitSeq(labels, ",") {
		if k, v, ok := strings.Cut(pair, "="); ok {
			got[k] = strings.Trim(v, `"`)
		}
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
