// Package status is the gateway's state report: peers, exported and
// imported services with endpoint counts per cluster, and the routing
// decision for a name. The admin server serves it as JSON at /status
// (/status?name=SNI adds the decision); `ewgw status` fetches and prints it.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/ewgw/ewgw/internal/model"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the gateway's state at one moment.
type Report struct {
	Cluster string `json:"cluster"`
	Region  string `json:"region,omitempty"`
	// Ready is empty when the gateway is ready, else why not.
	NotReady string `json:"not_ready,omitempty"`
	// Identity is the gateway's own SPIFFE identity and when each part of
	// it expires; absent without peering.
	Identity *Identity `json:"identity,omitempty"`
	Peers    []Peer    `json:"peers"`
	Exported []Service `json:"exported"`
	Imported []Service `json:"imported"`
	Decision *Decision `json:"decision,omitempty"`
}

// Peer is one configured peer gateway.
type Peer struct {
	Name         string    `json:"name"`
	ID           string    `json:"id,omitempty"`
	Up           bool      `json:"up"`
	Cluster      string    `json:"cluster,omitempty"`
	Region       string    `json:"region,omitempty"`
	RTTMillis    float64   `json:"rtt_ms"`
	CwndBytes    uint64    `json:"cwnd_bytes"`   // this side's congestion windows, summed over connections
	LossPercent  float64   `json:"loss_percent"` // packets declared lost, of those sent
	Conns        int       `json:"conns"`
	TCPConns     int       `json:"tcp_conns"` // of Conns, those on the TCP transport; the others are QUIC
	Since        time.Time `json:"since,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
}

// Identity is the gateway's SPIFFE ID and the expiries that can end its
// peering: its SVID, the CA it issues from (ca identity source only) and
// each trust bundle's first root to expire.
type Identity struct {
	ID           string    `json:"id"`
	SVIDNotAfter time.Time `json:"svid_not_after"`
	CANotAfter   time.Time `json:"ca_not_after,omitzero"`
	Bundles      []Bundle  `json:"bundles"`
}

// Bundle is one trust domain's bundle.
type Bundle struct {
	TrustDomain string    `json:"trust_domain"`
	NotAfter    time.Time `json:"not_after"` // the first of its roots to expire
	Roots       int       `json:"roots"`
	// Federated is set when a peer of the trust domain announced the
	// bundle (peering.federate), which replaces the configured one.
	Federated bool `json:"federated,omitempty"`
}

// Service is a service and where it is served.
type Service struct {
	Service  string    `json:"service"` // namespace/name
	Clusters []Cluster `json:"clusters"`
}

// Cluster is one cluster serving a service: its ready endpoints per port.
type Cluster struct {
	Cluster string             `json:"cluster"`
	Peer    string             `json:"peer,omitempty"` // empty for this cluster
	Ports   []model.ExportPort `json:"ports"`
}

// Decision is how a server name routes.
type Decision struct {
	Name    string `json:"name"`
	Target  string `json:"target,omitempty"` // namespace/name:port
	Refused string `json:"refused,omitempty"`
	Mode    string `json:"mode,omitempty"`
	// Candidates in fallback order with their first-choice shares.
	Candidates []Candidate `json:"candidates,omitempty"`
}

// Candidate is a cluster a connection may go to.
type Candidate struct {
	Cluster string  `json:"cluster"`
	Peer    string  `json:"peer,omitempty"`
	Region  string  `json:"region,omitempty"`
	Ready   int     `json:"ready"`
	Share   float64 `json:"share"`
}

// Handler serves report as JSON; the name query parameter asks for the
// decision on that server name.
func Handler(report func(name string) Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report(r.URL.Query().Get("name"))) // a failed write means the client left
	})
}

// Fetch gets the report from an admin address ("host:port" or a URL).
func Fetch(ctx context.Context, admin, name string) (Report, error) {
	base := admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u := strings.TrimSuffix(base, "/") + "/status"
	if name != "" {
		u += "?name=" + url.QueryEscape(name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Report{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Report{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Report{}, fmt.Errorf("%s: %s", u, resp.Status)
	}
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Report{}, fmt.Errorf("%s: %w", u, err)
	}
	return r, nil
}

// transports says what carries a peer's connections: quic, tcp (the
// fallback), or both while one moves to the other.
func transports(p Peer) string {
	switch {
	case p.Conns == 0:
		return "-"
	case p.TCPConns == 0:
		return "quic"
	case p.TCPConns == p.Conns:
		return "tcp"
	}
	return fmt.Sprintf("quic+tcp(%d)", p.TCPConns)
}

// Print writes r for people.
func Print(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ready := "ready"
	if r.NotReady != "" {
		ready = "NOT READY: " + r.NotReady
	}
	fmt.Fprintf(tw, "cluster %s (region %s): %s\n\n", r.Cluster, orDash(r.Region), ready)
	if r.Identity != nil {
		printIdentity(tw, *r.Identity, time.Now())
	}
	fmt.Fprintln(tw, "PEER\tSTATE\tCLUSTER\tREGION\tRTT\tCWND\tLOSS\tCONNS\tTRANSPORT\tLAST ERROR")
	for _, p := range r.Peers {
		state := "down"
		if p.Up {
			state = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fms\t%.0fKiB\t%.2f%%\t%d\t%s\t%s\n", p.Name, state, orDash(p.Cluster), orDash(p.Region),
			p.RTTMillis, float64(p.CwndBytes)/1024, p.LossPercent, p.Conns, transports(p), orDash(p.LastError))
	}
	for _, sec := range []struct {
		title string
		svcs  []Service
	}{{"EXPORTED", r.Exported}, {"IMPORTED", r.Imported}} {
		fmt.Fprintf(tw, "\n%s SERVICE\tCLUSTER\tREADY ENDPOINTS BY PORT\n", sec.title)
		for _, s := range sec.svcs {
			for _, c := range s.Clusters {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Service, clusterName(c.Cluster, c.Peer), ports(c.Ports))
			}
		}
	}
	if d := r.Decision; d != nil {
		fmt.Fprintf(tw, "\nROUTE %s: ", d.Name)
		if d.Refused != "" {
			fmt.Fprintf(tw, "refused (%s)\n", d.Refused)
		} else {
			fmt.Fprintf(tw, "%s, policy %s\n", d.Target, d.Mode)
			fmt.Fprintln(tw, "ORDER\tCLUSTER\tREGION\tREADY\tFIRST CHOICE")
			for i, c := range d.Candidates {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.1f%%\n", i+1, clusterName(c.Cluster, c.Peer), orDash(c.Region), c.Ready, 100*c.Share)
			}
			if len(d.Candidates) == 0 {
				fmt.Fprintln(tw, "-\tno cluster has a ready endpoint")
			}
		}
	}
	return tw.Flush()
}

// printIdentity writes the identity's expiries with the time left at now.
func printIdentity(w io.Writer, id Identity, now time.Time) {
	fmt.Fprintf(w, "IDENTITY %s\n", id.ID)
	fmt.Fprintln(w, "EXPIRES\tNOT AFTER\tLEFT")
	row := func(what string, t time.Time) {
		fmt.Fprintf(w, "%s\t%s\t%s\n", what, t.UTC().Format(time.RFC3339), Left(t.Sub(now)))
	}
	row("svid", id.SVIDNotAfter)
	if !id.CANotAfter.IsZero() {
		row("ca", id.CANotAfter)
	}
	for _, b := range id.Bundles {
		what := "bundle " + b.TrustDomain
		if b.Roots > 1 {
			what += fmt.Sprintf(" (%d roots)", b.Roots)
		}
		if b.Federated {
			what += " (federated)"
		}
		row(what, b.NotAfter)
	}
	fmt.Fprintln(w)
}

// Left formats the time left before an expiry for people: days beyond two
// days, else hours and minutes, else seconds; "EXPIRED" once negative.
func Left(d time.Duration) string {
	switch {
	case d < 0:
		return "EXPIRED"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Truncate(time.Second).String()
}

func clusterName(cluster, peer string) string {
	switch {
	case peer == "":
		return cluster + " (local)"
	case cluster == "" || cluster == peer:
		return peer
	}
	return cluster + " (peer " + peer + ")"
}

func ports(ps []model.ExportPort) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%d:%d", p.Port, p.Ready))
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
