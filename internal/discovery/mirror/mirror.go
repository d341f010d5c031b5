// Package mirror keeps, for every exported service of the cluster set whose
// namespace exists in this cluster, a selectorless Service <name>-<suffix>
// (suffix "global" by default) whose endpoints are the gateway's own pods.
// Clients without a mesh then reach the service by name, locally or in
// another cluster, through the gateway (docs/architecture.md, "Import
// mirrors").
//
// Mirrors go only into namespaces that opt in: labelled
// ewgw.io/import=true, or listed in Config.Namespaces; never a kube-*
// namespace. At most Config.MaxServices mirrors are kept.
//
// For web in namespace shop exported with port 443, each gateway replica
// keeps:
//
//   - the Service shop/web-global: type ClusterIP, no selector, one port
//     tcp-443 (port 443, TCP), labelled app.kubernetes.io/managed-by=ewgw and
//     ewgw.io/mirror-of=web. The first replica creates it; the others find it
//     equal and leave it alone, so replicas never fight over it.
//   - its own EndpointSlice per address family, named from the mirror and the
//     replica (shop/web-global-<hash>, plus -v6 for IPv6), labelled
//     kubernetes.io/service-name=web-global,
//     endpointslice.kubernetes.io/managed-by=mirror.ewgw.io,
//     app.kubernetes.io/managed-by=ewgw and ewgw.io/replica=<replica>: one
//     ready endpoint per replica address, one port tcp-443 targeting the
//     gateway's listen port. A replica writes only its own slices.
//
// The mirror never modifies or deletes an object it did not create: a
// Service that holds a mirror's name without the managed-by label is left
// alone, logged once and counted in ewgw_mirror_conflicts_total, and no
// slice is written for it.
//
// Cleanup. When a service leaves the desired set (its export disappeared
// everywhere) or its namespace goes, a replica deletes its own slices, and
// deletes the mirror Service unless another replica's slices for it remain:
// the last replica to let go removes the Service, so a replica whose view
// lags never takes a Service away from the others. A replica whose desired
// set is empty leaves nothing of its own behind. Run does not delete
// anything when its context ends, so a restarting gateway does not blip
// clients; the next Run adopts the objects (and removes those no longer
// desired, but only after the first Set). The slices of a replica that is
// gone for good are removed by the garbage collector when Config.PodUID is
// set (they are owned by the replica's Pod); without it they stay until
// deleted by hand, and they keep their mirror Service alive.
//
// RBAC. A replica needs, cluster-wide (a ClusterRole):
//
//   - namespaces: list, watch
//   - services: get, list, watch, create, update, delete
//   - endpointslices.discovery.k8s.io: get, list, watch, create, update, delete
//
// It watches only objects labelled as its own; get reads a Service or slice
// whose name collides with a create, to tell someone else's object from a
// lagging cache.
package mirror

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Client is the part of the Kubernetes API the mirror uses: Namespaces,
// Services and EndpointSlices. A *kubeclient.Set is one, and so is
// client-go's full clientset.
type Client interface {
	CoreV1() corev1client.CoreV1Interface
	DiscoveryV1() discoveryv1client.DiscoveryV1Interface
}

// Config configures a Mirror.
type Config struct {
	// Client reaches this cluster's apiserver. Required.
	Client Client
	// Suffix names mirrors <name>-<suffix>. Default DefaultSuffix.
	Suffix string
	// Addresses are this replica's pod addresses, IPv4 and/or IPv6; at
	// least one. Each family gets its own EndpointSlice.
	Addresses []netip.Addr
	// Port is the gateway's TCP listen port: every mirror port targets it.
	// Required.
	Port uint16
	// Replica is this replica's name, normally its pod name; it names the
	// replica's EndpointSlices and is their ewgw.io/replica label, so it
	// must be a valid label value. Required.
	Replica string
	// PodUID, when set, makes the Pod named Replica the owner of this
	// replica's EndpointSlices, so the garbage collector removes them with
	// the pod.
	PodUID string
	// Namespaces opt in to mirrors besides those labelled LabelImport=true.
	// Mirrors are written only into opted-in namespaces: exports from
	// peers never create objects where nobody asked for them.
	Namespaces []string
	// MaxServices caps the mirrors this replica keeps; the desired
	// services past it (in namespace/name order) are left out and counted.
	// Default DefaultMaxServices.
	MaxServices int
	// Logger reports conflicts, skipped services and failed writes.
	// Default: discard.
	Logger *slog.Logger
	// Registerer receives the ewgw_mirror_* metrics. Default: a private
	// registry nobody scrapes.
	Registerer prometheus.Registerer
}

// workers reconcile different mirrors in parallel; one mirror is never
// reconciled by two at once (the work queue guarantees it).
const workers = 4

// conflictRecheck is how often a name held by someone else's Service is
// looked at again: the mirror does not watch unmanaged objects, so it
// learns of the name being freed only by asking.
const conflictRecheck = time.Minute

// key names one mirror Service; name is the mirror's, not the source's.
type key struct{ namespace, name string }

func (k key) String() string { return k.namespace + "/" + k.name }

// want is the desired state of one mirror: its source service's name and
// its sorted, distinct ports.
type want struct {
	source string
	ports  []uint16
}

// Mirror keeps the mirror Services and this replica's EndpointSlices in
// line with the desired set. Its methods are safe for concurrent use.
type Mirror struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	v4, v6 []netip.Addr

	queue      workqueue.TypedRateLimitingInterface[key] // made by Run: its goroutine is Run's to stop
	namespaces cache.SharedIndexInformer
	services   cache.SharedIndexInformer
	slices     cache.SharedIndexInformer

	firstSet     chan struct{} // closed by the first Set
	firstSetOnce sync.Once
	running      atomic.Bool
	synced       atomic.Bool

	mu         sync.Mutex
	want       map[key]want
	gen        uint64         // Set calls so far
	pending    map[key]uint64 // mirrors not yet reconciled since the Set (gen) that last named them
	working    bool           // caches synced and workers started
	settled    chan struct{}  // closed and replaced each time pending empties
	skipped    map[string]string
	lastCapped int // desired services past MaxServices at the last Set
	kept       map[key]bool
	conflicts  map[key]types.UID
}

// New validates cfg and returns a Mirror; Run starts it.
func New(cfg Config) (*Mirror, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	m := &Mirror{
		cfg:       cfg,
		log:       cfg.Logger,
		m:         newMetrics(cfg.Registerer),
		firstSet:  make(chan struct{}),
		want:      map[key]want{},
		pending:   map[key]uint64{},
		settled:   make(chan struct{}),
		skipped:   map[string]string{},
		kept:      map[key]bool{},
		conflicts: map[key]types.UID{},
	}
	for _, a := range cfg.Addresses {
		if a = a.Unmap(); a.Is4() {
			m.v4 = append(m.v4, a)
		} else {
			m.v6 = append(m.v6, a)
		}
	}
	m.v4, m.v6 = sortedUnique(m.v4), sortedUnique(m.v6)
	if err := m.newInformers(); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return m, nil
}

func (c Config) withDefaults() Config {
	if c.Suffix == "" {
		c.Suffix = DefaultSuffix
	}
	if c.MaxServices <= 0 {
		c.MaxServices = DefaultMaxServices
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c
}

// validate reports every problem of c at once.
func (c Config) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("no client"))
	}
	// The shortest source name is one letter.
	if _, err := mirrorName("a", c.Suffix); err != nil {
		errs = append(errs, fmt.Errorf("suffix %q: <name>-<suffix> must be a DNS-1035 label of at most 63 characters", c.Suffix))
	}
	if len(c.Addresses) == 0 {
		errs = append(errs, errors.New("no addresses"))
	}
	for _, a := range c.Addresses {
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("address %q: not a usable pod address", a))
		}
	}
	if c.Port == 0 {
		errs = append(errs, errors.New("no port"))
	}
	if c.Replica == "" {
		errs = append(errs, errors.New("no replica name"))
	} else if e := validation.IsValidLabelValue(c.Replica); len(e) > 0 {
		errs = append(errs, fmt.Errorf("replica %q: not a label value: %v", c.Replica, e))
	}
	return errors.Join(errs...)
}

func sortedUnique(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Compact(a)
}
