package tunnel

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ewgw/ewgw/internal/route"
)

// Budgets for what one peer can make this gateway hold. A peer that goes
// over one is told why (the connection closes with CodeLimit or
// CodeProtocol) and the reason is counted, logged at info and kept as the
// peer's LastError.
const (
	// MaxExportPorts caps the ports of one exported service: Kubernetes
	// sets no limit, real Services list a handful, and every port of every
	// service costs memory on every connection.
	MaxExportPorts = 64
	// MaxReady clamps the ready-endpoint count a peer announces for a port.
	// Active-active weights clusters by it, so a peer claiming 2^32−1 would
	// take all traffic. 1,000 is the most endpoints one EndpointSlice may
	// hold and four times the 250 endpoints per Service Kubernetes is
	// tested with. A peer may still claim up to MaxReady: active-active
	// trusts peers' counts; weights (distribute) or failover do not.
	MaxReady = 1000
	// maxLabel is the longest DNS-1123 label: a namespace or service name.
	maxLabel = 63
)

// Reasons a peer connection was closed for breaking a rule or a budget,
// or because its identity stopped passing: the "reason" label of
// ewgw_tunnel_peer_refusals_total. The set is closed.
const (
	refuseBadExport       = "bad_export"       // an entry is malformed (names, ports)
	refuseServices        = "over_services"    // catalogue over MaxImportedServices
	refuseBytes           = "over_bytes"       // catalogue over MaxImportedBytes
	refuseClusterMismatch = "cluster_mismatch" // hello names another cluster than the peer entry
	refuseConns           = "too_many_conns"   // over MaxConnsPerPeerIn
	refuseRevoked         = "revoked"          // Recheck failed
	refuseCertExpiry      = "cert_expiry"      // the peer's leaf reached NotAfter while connected
	refuseProtocol        = "protocol"         // a control message is malformed or does not apply
	refusePenalised       = "penalised"        // a new connection while the peer is penalised (penalty.go)
	refuseProbation       = "probation"        // a second connection while the peer's one on trial says its hello (penalty.go)
)

// PolicyError reports a peer connection closed because the peer broke a
// rule or a budget, or its identity no longer passes. PeerStatus.LastError
// holds one after such a close.
type PolicyError struct {
	// Reason is a short snake_case name, the metric label.
	Reason string
	// Code is the code the connection was closed with.
	Code ErrorCode
	// Err says what happened.
	Err error
	// Until, when set, is the end of the penalty the violation earned
	// the peer: its connections are refused until then (penalty.go).
	Until time.Time
}

// Error implements error.
func (e *PolicyError) Error() string {
	return fmt.Sprintf("peer connection closed (%s, %s): %v%s", e.Reason, e.Code, e.Err, penaltyNote(e.Until))
}

// Unwrap returns Err.
func (e *PolicyError) Unwrap() error { return e.Err }

func refusal(reason string, code ErrorCode, format string, args ...any) *PolicyError {
	return &PolicyError{Reason: reason, Code: code, Err: fmt.Errorf(format, args...)}
}

// checkExport reports whether e may be in a catalogue: namespace and name
// are DNS-1123 labels, at most MaxExportPorts ports, none 0, none twice.
func checkExport(e Export) error {
	switch {
	case !isLabel(e.Service.Namespace):
		return fmt.Errorf("namespace %q is not a DNS-1123 label", trim(e.Service.Namespace))
	case !isLabel(e.Service.Name):
		return fmt.Errorf("service %s/%q: name is not a DNS-1123 label", e.Service.Namespace, trim(e.Service.Name))
	case len(e.Ports) > MaxExportPorts:
		return fmt.Errorf("service %s/%s: %d ports, at most %d", e.Service.Namespace, e.Service.Name, len(e.Ports), MaxExportPorts)
	}
	for i, p := range e.Ports {
		if p.Port == 0 {
			return fmt.Errorf("service %s/%s: port 0", e.Service.Namespace, e.Service.Name)
		}
		for _, q := range e.Ports[:i] {
			if q.Port == p.Port {
				return fmt.Errorf("service %s/%s: port %d twice", e.Service.Namespace, e.Service.Name, p.Port)
			}
		}
	}
	return nil
}

// checkKey is checkExport for a removal.
func checkKey(k serviceKey) error { return checkExport(Export{Service: k}) }

// isLabel reports whether s is a DNS-1123 label: lower-case LDH, 1 to 63
// bytes, not starting or ending with '-'. A label is a host name without
// dots, whose rules route owns.
func isLabel(s string) bool {
	return len(s) <= maxLabel && !strings.Contains(s, ".") && route.IsHostName(s)
}

// trim shortens a peer-supplied string for an error message.
func trim(s string) string {
	if len(s) > maxLabel+1 {
		return s[:maxLabel] + "…"
	}
	return s
}

// clampReady caps each port's Ready at MaxReady, in place.
func clampReady(exports []Export) {
	for i := range exports {
		for j := range exports[i].Ports {
			exports[i].Ports[j].Ready = min(exports[i].Ports[j].Ready, MaxReady)
		}
	}
}

// catalogueBytes is the size that MaxImportedBytes counts.
func catalogueBytes(exports []Export) int {
	n := 0
	for _, e := range exports {
		n += len(e.Service.Namespace) + len(e.Service.Name) + exportPortLen*len(e.Ports)
	}
	return n
}

// checkBudget reports a catalogue over the tunnel's budgets.
func (cfg *Config) checkBudget(exports []Export) *PolicyError {
	return cfg.checkCounts(len(exports), catalogueBytes(exports), false)
}

// checkCounts reports a catalogue of n services and size bytes over the
// tunnel's budgets; partial means more parts were still to come, so the
// catalogue is at least that large.
func (cfg *Config) checkCounts(n, size int, partial bool) *PolicyError {
	least := ""
	if partial {
		least = "at least "
	}
	if n > cfg.MaxImportedServices {
		return refusal(refuseServices, CodeLimit, "catalogue of %s%d services is over the budget of %d (peering.max_imported_services)",
			least, n, cfg.MaxImportedServices)
	}
	if size > cfg.MaxImportedBytes {
		return refusal(refuseBytes, CodeLimit, "catalogue of %s%d bytes is over the budget of %d (peering.max_imported_bytes)",
			least, size, cfg.MaxImportedBytes)
	}
	return nil
}

// announceable returns the exports a peer will accept, and the problems
// with the others, which are left out: one bad local entry must not cost
// the whole peering.
func announceable(exports []Export) ([]Export, error) {
	out := exports[:0:0]
	var errs []error
	for _, e := range exports {
		if err := checkExport(e); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}
