package gateway

import (
	"github.com/ewgw/ewgw/internal/identity"
	"github.com/ewgw/ewgw/internal/status"
)

// identityStatus is the status report's view of the identity's expiries.
func identityStatus(e identity.Expiry) *status.Identity {
	id := &status.Identity{ID: e.ID, SVIDNotAfter: e.SVID, CANotAfter: e.CA, Bundles: []status.Bundle{}}
	for _, b := range e.Bundles {
		id.Bundles = append(id.Bundles, status.Bundle{TrustDomain: b.TrustDomain, NotAfter: b.NotAfter, Roots: b.Roots, Federated: b.Federated})
	}
	return id
}
