package config

import (
	"fmt"
	"time"

	"github.com/ewgw/ewgw/internal/certgen"
)

// minSVIDTTL is the shortest ttl the ca identity accepts: an SVID is issued
// again at half its life, and peers retire connections before it expires.
const minSVIDTTL = time.Second

// validate reports every problem in peering.identity: exactly one source,
// and that source's required fields.
func (id *Identity) validate() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("peering.identity"+format, args...))
	}
	n := 0
	for _, set := range []bool{id.WorkloadAPI != nil, id.Files != nil, id.CA != nil} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		add(": set one of workload_api, files and ca, not both")
	case n == 0:
		add(": set one of workload_api, files and ca")
	case id.Files != nil:
		if id.Files.CertChain == "" || id.Files.Key == "" {
			add(".files: cert_chain and key are required")
		}
		if len(id.Files.Bundles) == 0 {
			add(".files.bundles: at least one trust domain bundle is required")
		}
	case id.CA != nil:
		c := id.CA
		if c.CertChain == "" || c.Key == "" {
			add(".ca: cert_chain and key are required")
		}
		if len(c.Bundles) == 0 {
			add(".ca.bundles: at least one trust domain bundle is required")
		}
		if c.TTL.D() < minSVIDTTL {
			add(".ca.ttl: %v is below the %v minimum", c.TTL.D(), minSVIDTTL)
		}
		if c.ID != "" {
			if _, err := certgen.ParseID(c.ID); err != nil {
				add(".ca.id: %w", err)
			}
		}
	}
	return errs
}
