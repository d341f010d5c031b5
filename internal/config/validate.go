package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// Validate reports every problem with c at once, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Cluster == "" {
		add("cluster: required")
	}
	if err := checkHostPort(c.Listen); err != nil {
		add("listen: %w", err)
	}
	if c.Admin.Listen != "off" {
		if err := checkHostPort(c.Admin.Listen); err != nil {
			add("admin.listen: %w", err)
		}
	}
	if l := c.PublicPassthrough.Listen; l != "" {
		if err := checkHostPort(l); err != nil {
			add("public_passthrough.listen: %w", err)
		}
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "json", "text") {
		add("log.format: %q is not one of json, text", c.Log.Format)
	}
	if !oneOf(c.Procs, "adaptive", "runtime") {
		add("procs: %q is not one of adaptive, runtime", c.Procs)
	}
	if c.Hello.MaxSize < 512 || c.Hello.MaxSize > 1<<20 {
		add("hello.max_size: %d is outside [512, 1048576]", c.Hello.MaxSize)
	}
	positive := map[string]Duration{
		"hello.timeout":               c.Hello.Timeout,
		"upstream.connect_timeout":    c.Upstream.ConnectTimeout,
		"upstream.eject_for":          c.Upstream.EjectFor,
		"upstream.max_eject_for":      c.Upstream.MaxEjectFor,
		"upstream.half_close_timeout": c.Upstream.HalfCloseTimeout,
		"drain_timeout":               c.DrainTimeout,
	}
	for _, k := range slices.Sorted(maps.Keys(positive)) {
		if positive[k] < 0 {
			add("%s: must not be negative", k)
		}
	}
	if c.Upstream.Attempts < 0 || c.Upstream.EjectAfter < 0 || c.MaxConnections < 0 || c.MaxConnectionsPerSource < 0 || c.Hello.Budget < 0 {
		add("upstream.attempts, upstream.eject_after, max_connections, max_connections_per_source, hello.budget: must not be negative")
	}
	if c.Hello.Budget != 0 && c.Hello.Budget < c.Hello.MaxSize {
		add("hello.budget: %d is below hello.max_size %d: no hello could be read", c.Hello.Budget, c.Hello.MaxSize)
	}
	if _, err := c.Names.Route(); err != nil {
		errs = append(errs, err)
	}
	if c.Peering != nil {
		errs = append(errs, c.Peering.validate()...)
	}
	switch d := c.Discovery; {
	case d.File == "" && d.Kubernetes == nil:
		add("discovery: set file (a static services file) or kubernetes")
	case d.File != "" && d.Kubernetes != nil:
		add("discovery: set file or kubernetes, not both")
	}
	if k := c.Discovery.Kubernetes; k != nil {
		if k.Debounce < 0 {
			add("discovery.kubernetes.debounce: must not be negative")
		}
		for _, s := range k.EndpointCIDRs {
			if _, err := netip.ParsePrefix(s); err != nil {
				add("discovery.kubernetes.endpoint_cidrs: %q is not a CIDR prefix", s)
			}
		}
	}
	if im := c.Discovery.Import; im != nil {
		if c.Discovery.Kubernetes == nil {
			add("discovery.import: needs discovery.kubernetes")
		}
		for _, a := range im.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				add("discovery.import.addresses: %q is not an IP address", a)
			}
		}
	}
	pol := c.Policy.Route()
	if err := pol.Validate(); err != nil {
		add("policy: %w", err)
	}
	return errors.Join(errs...)
}

// Route converts the names section to route.Names, reporting every problem.
func (n Names) Route() (route.Names, error) {
	out := route.Names{ClusterDomains: n.ClusterDomains, Suffixes: n.Suffixes}
	var errs []error
	for i, h := range n.Hosts {
		key, err := ParseServiceKey(h.Service)
		if err != nil {
			errs = append(errs, fmt.Errorf("names.hosts[%d].service: %w", i, err))
		}
		out.Hosts = append(out.Hosts, route.HostRule{Match: h.Match, Target: route.Target{Service: key, Port: h.Port}})
	}
	if err := route.ValidateNames(out); err != nil {
		errs = append(errs, fmt.Errorf("names.hosts: %w", err))
	}
	return out, errors.Join(errs...)
}

// ParseServiceKey parses "namespace/name".
func ParseServiceKey(s string) (model.ServiceKey, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return model.ServiceKey{}, fmt.Errorf("%q: want namespace/name", s)
	}
	return model.ServiceKey{Namespace: ns, Name: name}, nil
}

func checkHostPort(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}
