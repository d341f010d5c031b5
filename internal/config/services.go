package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/ewgw/ewgw/internal/audience"
	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// ServicesFile is the static service source: the same shape Kubernetes
// discovery fills from Services and EndpointSlices.
//
//	services:
//	  - namespace: default
//	    name: web
//	    exported: true
//	    export_to: [cluster-b]     # optional: who may reach it; default every allowed peer
//	    ports:
//	      - port: 443
//	        endpoints: ["10.0.0.7:8443", "10.0.0.8:8443"]
type ServicesFile struct {
	Services []ServiceEntry `yaml:"services"`
}

// ServiceEntry is one service in a ServicesFile.
type ServiceEntry struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	Exported  bool   `yaml:"exported"`
	// ExportTo restricts an exported service to some peers: cluster names,
	// spiffe://trust-domain, or SPIFFE ID patterns (internal/audience).
	// Empty: every allowed peer.
	ExportTo []string    `yaml:"export_to"`
	Ports    []PortEntry `yaml:"ports"`
}

// PortEntry is one service port and its ready endpoints ("ip:port").
type PortEntry struct {
	Port      uint16   `yaml:"port"`
	Endpoints []string `yaml:"endpoints"`
}

// LoadServices reads and validates a services file.
func LoadServices(path string) ([]route.Service, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	svcs, err := ParseServices(b)
	if err != nil {
		return nil, fmt.Errorf("services %s: %w", path, err)
	}
	return svcs, nil
}

// ParseServices decodes and validates a services document, reporting every
// problem at once.
func ParseServices(b []byte) ([]route.Service, error) {
	var f ServicesFile
	if err := decodeStrict(b, &f); err != nil {
		return nil, err
	}
	var errs []error
	seen := map[model.ServiceKey]bool{}
	out := make([]route.Service, 0, len(f.Services))
	for i, s := range f.Services {
		at := fmt.Sprintf("services[%d]", i)
		key := model.ServiceKey{Namespace: s.Namespace, Name: s.Name}
		if s.Namespace == "" || s.Name == "" {
			errs = append(errs, fmt.Errorf("%s: namespace and name are required", at))
		} else if seen[key] {
			errs = append(errs, fmt.Errorf("%s: duplicate service %s", at, key))
		}
		seen[key] = true
		if len(s.Ports) == 0 {
			errs = append(errs, fmt.Errorf("%s: at least one port is required", at))
		}
		svc := route.Service{Key: key, Exported: s.Exported}
		var err error
		if svc.Audience, err = audience.Parse(s.ExportTo); err != nil {
			errs = append(errs, fmt.Errorf("%s.export_to: %w", at, err))
		}
		if len(s.ExportTo) > 0 && !s.Exported {
			errs = append(errs, fmt.Errorf("%s.export_to: set on a service that is not exported", at))
		}
		for j, p := range s.Ports {
			port, perrs := parsePort(fmt.Sprintf("%s.ports[%d]", at, j), p, svc.Ports)
			errs = append(errs, perrs...)
			svc.Ports = append(svc.Ports, port)
		}
		out = append(out, svc)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func parsePort(at string, p PortEntry, earlier []route.Port) (route.Port, []error) {
	var errs []error
	if p.Port == 0 {
		errs = append(errs, fmt.Errorf("%s.port: required", at))
	}
	if slices.ContainsFunc(earlier, func(x route.Port) bool { return x.Port == p.Port }) {
		errs = append(errs, fmt.Errorf("%s.port: duplicate port %d", at, p.Port))
	}
	out := route.Port{Port: p.Port}
	for k, e := range p.Endpoints {
		ap, err := netip.ParseAddrPort(e)
		if err != nil || ap.Port() == 0 {
			errs = append(errs, fmt.Errorf("%s.endpoints[%d]: %q is not ip:port", at, k, e))
			continue
		}
		out.Endpoints = append(out.Endpoints, ap)
	}
	return out, errs
}
