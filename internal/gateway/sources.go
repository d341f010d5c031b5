package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/ewgw/ewgw/internal/config"
	"github.com/ewgw/ewgw/internal/discovery"
	"github.com/ewgw/ewgw/internal/discovery/kube"
	"github.com/ewgw/ewgw/internal/discovery/mirror"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// source is where local services come from: the static file or
// Kubernetes. Both report whole snapshots to gateway.setLocal.
type source interface {
	Run(ctx context.Context) error
	// Synced reports whether the first snapshot was reported.
	Synced() bool
}

// fileSource is the static file source, loaded before the gateway starts.
type fileSource struct{ *discovery.File }

func (fileSource) Synced() bool { return true }

// setLocal takes a new snapshot of local services and rebuilds the table.
func (gw *Gateway) setLocal(s []route.Service) {
	gw.mu.Lock()
	gw.local = s
	gw.mu.Unlock()
	gw.rebuild()
	gw.log.Info("services updated", "services", len(s))
}

// newSource builds the configured discovery source, and the mirror of
// imported services when configured.
func (gw *Gateway) newSource(cfg config.Discovery) error {
	if cfg.Kubernetes == nil {
		f := &discovery.File{Path: cfg.File, Logger: gw.log, Update: gw.setLocal}
		if err := f.Load(); err != nil {
			return fmt.Errorf("load services: %w", err)
		}
		gw.source = fileSource{f}
		return nil
	}
	k := cfg.Kubernetes
	rc, err := kube.RESTConfig(k.Kubeconfig)
	if err != nil {
		return err
	}
	client, mcs, err := kube.NewClients(rc)
	if err != nil {
		return err
	}
	gw.source, err = kube.New(kube.Config{
		Client: client, MCS: mcs, Namespace: k.Namespace, Debounce: k.Debounce.D(), EndpointCIDRs: k.Prefixes(),
		Update: gw.setLocal, Logger: gw.log.With("component", "discovery"), Registerer: gw.reg,
	})
	if err != nil {
		return err
	}
	if cfg.Import == nil {
		return nil
	}
	mc, err := mirrorConfig(cfg.Import, gw.ln.Addr())
	if err != nil {
		return err
	}
	mc.Client, mc.Logger, mc.Registerer = client, gw.log.With("component", "import"), gw.reg
	gw.mirror, err = mirror.New(mc)
	return err
}

// mirrorConfig fills the replica's identity from the import section, else
// from the downward API's environment variables.
func mirrorConfig(im *config.Import, listen interface{ String() string }) (mirror.Config, error) {
	mc := mirror.Config{Suffix: im.Suffix, Replica: im.Replica, PodUID: im.PodUID, Namespaces: im.Namespaces, MaxServices: im.MaxServices}
	addrs := im.Addresses
	if len(addrs) == 0 {
		if ips := os.Getenv("POD_IPS"); ips != "" {
			addrs = strings.Split(ips, ",")
		} else if ip := os.Getenv("POD_IP"); ip != "" {
			addrs = []string{ip}
		}
	}
	for _, a := range addrs {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return mc, fmt.Errorf("discovery.import: pod address %q: %w", a, err)
		}
		mc.Addresses = append(mc.Addresses, ip)
	}
	if len(mc.Addresses) == 0 {
		return mc, fmt.Errorf("discovery.import: no pod address: set addresses or the POD_IP(S) environment variable (downward API status.podIPs)")
	}
	if mc.Replica == "" {
		mc.Replica = os.Getenv("POD_NAME")
	}
	if mc.Replica == "" {
		mc.Replica, _ = os.Hostname() // an empty name is reported by mirror.New
	}
	if mc.PodUID == "" {
		mc.PodUID = os.Getenv("POD_UID")
	}
	port, err := netip.ParseAddrPort(listen.String())
	if err != nil {
		return mc, err
	}
	mc.Port = port.Port()
	return mc, nil
}

// imports is what the mirror keeps: every service exported anywhere in the
// cluster set (locally, even without ready endpoints, or by an up peer);
// never a Reserved service, nor a peer's export that shares its name with a
// local service that is not exported. The mirror merges the ports of a
// service exported by several clusters.
func imports(local []route.Service, remote []model.Export) []model.Export {
	var out []model.Export
	private := map[model.ServiceKey]bool{}
	for _, s := range local {
		if !s.Exported || route.Reserved(s.Key) {
			private[s.Key] = true
			continue
		}
		out = append(out, s.Export())
	}
	for _, e := range remote {
		// The table refuses these names (Table.Resolve), so a mirror
		// would only lead clients to a refusal.
		if !private[e.Service] && !route.Reserved(e.Service) {
			out = append(out, e)
		}
	}
	return out
}
