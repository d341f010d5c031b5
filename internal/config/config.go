// Package config defines the gateway's YAML configuration file: its schema,
// defaults, and validation that reports every problem at once.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/ewgw/ewgw/internal/lb"
	"github.com/ewgw/ewgw/internal/proxy"
	"github.com/ewgw/ewgw/internal/route"
	"github.com/ewgw/ewgw/internal/sni"
)

// Config is the gateway configuration file. Every zero field takes the default
// documented beside it, applied by Load.
type Config struct {
	// Cluster names this cluster; required.
	Cluster string `yaml:"cluster"`
	// Region and Zone locate the cluster for failover policy.
	Region string `yaml:"region"`
	Zone   string `yaml:"zone"`
	// Listen is the client surface: the TCP address where clients inside
	// the cluster (through the mirror Services) reach exported services.
	// Publish it inside the cluster only. Default ":15443".
	Listen string `yaml:"listen"`
	// PublicPassthrough is an opt-in second TCP listener for
	// unauthenticated clients from outside the cluster, such as Istio
	// sidecars of another network dialling "outbound_.PORT_._.HOST". It
	// reaches only local services exported to every peer. Off by default.
	PublicPassthrough PublicPassthrough `yaml:"public_passthrough"`
	// Admin serves metrics, health and optional pprof.
	Admin Admin `yaml:"admin"`
	// Log configures log/slog output.
	Log Log `yaml:"log"`
	// Hello bounds the ClientHello read.
	Hello Hello `yaml:"hello"`
	// Upstream configures dials to local endpoints.
	Upstream Upstream `yaml:"upstream"`
	// MaxConnections caps concurrent client connections. Default 16384.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource caps one client address's concurrent
	// connections on each listener. Default proxy.DefaultMaxConnsPerSource
	// (2048), applied by the proxy.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// DrainTimeout is how long SIGTERM waits for live connections. Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Procs is "adaptive" (default: GOMAXPROCS 1 at light load, the Go
	// runtime's default once the process nears a core or goroutines queue
	// for the one P; see internal/procs) or "runtime" (always the Go
	// runtime's default). A GOMAXPROCS environment variable wins over both.
	Procs string `yaml:"procs"`
	// Names configures which server names route where.
	Names Names `yaml:"names"`
	// Discovery says where services and endpoints come from.
	Discovery Discovery `yaml:"discovery"`
	// Policy is the default multi-cluster traffic policy.
	Policy Policy `yaml:"policy"`
	// Peering connects this gateway to other clusters' gateways; nil
	// (absent) keeps the gateway local-only.
	Peering *Peering `yaml:"peering"`
}

// PublicPassthrough configures the opt-in public SNI passthrough.
type PublicPassthrough struct {
	// Listen is its TCP address; empty (the default) keeps it off.
	Listen string `yaml:"listen"`
}

// Admin configures the admin HTTP listener.
type Admin struct {
	// Listen is the admin address. Default "127.0.0.1:15000"; "off" disables.
	Listen string `yaml:"listen"`
	// Pprof mounts net/http/pprof under /debug/pprof/. Default false.
	Pprof bool `yaml:"pprof"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// Hello bounds the ClientHello read.
type Hello struct {
	// MaxSize caps the bytes read for one ClientHello. Default 16384.
	MaxSize int `yaml:"max_size"`
	// Timeout is the deadline for the whole ClientHello. Default 5s.
	Timeout Duration `yaml:"timeout"`
	// Budget caps the bytes all hellos being read may hold, at max_size
	// each; past it the hellos that waited longest are cut short to make
	// room. Default proxy.DefaultHelloBudget (64 MiB), applied by the
	// proxy.
	Budget int `yaml:"budget"`
}

// Upstream configures dials to local endpoints.
type Upstream struct {
	// ConnectTimeout bounds one TCP dial. Default 3s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Attempts is how many endpoints one connection tries. Default 3.
	Attempts int `yaml:"attempts"`
	// EjectAfter consecutive dial failures eject an endpoint. Default 3.
	EjectAfter int `yaml:"eject_after"`
	// EjectFor is the first ejection's length; it doubles per repeat up to
	// MaxEjectFor. Defaults 10s and 5m.
	EjectFor    Duration `yaml:"eject_for"`
	MaxEjectFor Duration `yaml:"max_eject_for"`
	// HalfCloseTimeout bounds how long a connection stays open after one
	// direction has finished. Default 5m.
	HalfCloseTimeout Duration `yaml:"half_close_timeout"`
}

// Names configures server-name matching (see route.Names).
type Names struct {
	// ClusterDomains recognised in name.ns.svc.<domain>. Default
	// [cluster.local, clusterset.local].
	ClusterDomains []string `yaml:"cluster_domains"`
	// Suffixes recognised in name.ns.<suffix>.
	Suffixes []string `yaml:"suffixes"`
	// Hosts map exact names or *.domain wildcards to a service.
	Hosts []Host `yaml:"hosts"`
}

// Host maps a server name pattern to a service port.
type Host struct {
	// Match is an exact name or "*.domain".
	Match string `yaml:"match"`
	// Service is "namespace/name".
	Service string `yaml:"service"`
	// Port is the service port; 0 means the service's first port.
	Port uint16 `yaml:"port"`
}

// Discovery selects the service source: a static file or Kubernetes.
type Discovery struct {
	// File is a static services file (see ServicesFile), re-read when it
	// changes.
	File string `yaml:"file"`
	// Kubernetes watches Services, EndpointSlices and ServiceExports.
	Kubernetes *Kubernetes `yaml:"kubernetes"`
	// Import keeps mirror Services for the cluster set's exported services
	// (Kubernetes only).
	Import *Import `yaml:"import"`
}

// Kubernetes configures the Kubernetes source.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster config.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespace limits discovery to one namespace; empty watches all.
	Namespace string `yaml:"namespace"`
	// Debounce bounds how often the routing table is rebuilt. Default 100ms.
	Debounce Duration `yaml:"debounce"`
	// EndpointCIDRs, when set, are the only prefixes endpoint addresses
	// may be in (say the pod network). Loopback, link-local, unspecified
	// and multicast endpoints are never dialled whatever it says.
	EndpointCIDRs []string `yaml:"endpoint_cidrs"`
}

// Prefixes parses EndpointCIDRs; Validate has checked them.
func (k *Kubernetes) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range k.EndpointCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Import configures mirror Services: "<name>-<suffix>" in each namespace
// that exists locally and opted in, pointing at this gateway, for every
// exported service in the cluster set.
type Import struct {
	// Suffix of mirror Service names. Default mirror.DefaultSuffix
	// ("global"), applied by the mirror.
	Suffix string `yaml:"suffix"`
	// Addresses are this replica's pod addresses. Default: the POD_IPS
	// (comma-separated) or POD_IP environment variable (downward API).
	Addresses []string `yaml:"addresses"`
	// Replica names this replica. Default: POD_NAME, else the host name.
	Replica string `yaml:"replica"`
	// PodUID, from POD_UID by default, lets the garbage collector remove
	// this replica's EndpointSlices with its pod.
	PodUID string `yaml:"pod_uid"`
	// Namespaces opt in to mirrors besides those labelled
	// ewgw.io/import=true; no other namespace gets one, and no kube-*
	// namespace ever does.
	Namespaces []string `yaml:"namespaces"`
	// MaxServices caps the mirrors. Default mirror.DefaultMaxServices.
	MaxServices int `yaml:"max_services"`
}

// Policy is the default traffic policy for services served by several
// clusters; services override it with ewgw.io/* annotations.
type Policy struct {
	// Mode is failover (default), distribute, active-active or primary.
	Mode string `yaml:"mode"`
	// Failover maps a source region ("*" for any) to the regions to fail
	// over to, in priority order.
	Failover map[string][]string `yaml:"failover"`
	// Distribute maps a source region ("*" for any) to weights per
	// destination region.
	Distribute map[string]map[string]uint32 `yaml:"distribute"`
	// Primary is the ordered cluster list for the primary mode.
	Primary []string `yaml:"primary"`
}

// Route converts the policy to route.Policy.
func (p Policy) Route() route.Policy {
	mode := route.Mode(p.Mode)
	if mode == "" {
		mode = route.Failover
	}
	return route.Policy{Mode: mode, FailoverRegions: p.Failover, Weights: p.Distribute, Clusters: p.Primary}
}

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes, defaults and validates a configuration document.
func Parse(b []byte) (*Config, error) {
	var c Config
	if err := decodeStrict(b, &c); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeStrict decodes one YAML document, rejecting unknown keys.
func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// Defaults the gateway owns: its listeners.
const (
	DefaultListen      = ":15443"
	DefaultAdminListen = "127.0.0.1:15000"
	// DefaultTCPListenPort is the port of peering.tcp_listen's default.
	DefaultTCPListenPort = 15445
)

func (c *Config) applyDefaults() {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.Admin.Listen = cmp.Or(c.Admin.Listen, DefaultAdminListen)
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, "json")
	// The components' own defaults, so the two cannot drift apart.
	c.Hello.MaxSize = cmp.Or(c.Hello.MaxSize, sni.DefaultMaxSize)
	c.Hello.Timeout = cmp.Or(c.Hello.Timeout, Duration(proxy.DefaultHelloTimeout))
	c.Upstream.ConnectTimeout = cmp.Or(c.Upstream.ConnectTimeout, Duration(proxy.DefaultConnectTimeout))
	c.Upstream.Attempts = cmp.Or(c.Upstream.Attempts, proxy.DefaultAttempts)
	c.Upstream.EjectAfter = cmp.Or(c.Upstream.EjectAfter, lb.DefaultEjectAfter)
	c.Upstream.EjectFor = cmp.Or(c.Upstream.EjectFor, Duration(lb.DefaultEjectFor))
	c.Upstream.MaxEjectFor = cmp.Or(c.Upstream.MaxEjectFor, Duration(lb.DefaultMaxEjectFor))
	c.Upstream.HalfCloseTimeout = cmp.Or(c.Upstream.HalfCloseTimeout, Duration(proxy.DefaultHalfCloseTimeout))
	c.MaxConnections = cmp.Or(c.MaxConnections, proxy.DefaultMaxConns)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, Duration(proxy.DefaultDrainTimeout))
	c.Procs = cmp.Or(c.Procs, "adaptive")
	if c.Peering != nil {
		c.Peering.applyDefaults()
	}
}
