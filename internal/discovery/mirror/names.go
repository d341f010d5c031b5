package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels on every object the mirror writes.
const (
	// LabelManagedBy marks mirror Services and EndpointSlices; the mirror
	// never modifies or deletes an object without it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is LabelManagedBy's value.
	ManagedBy = "ewgw"
	// LabelMirrorOf names the exported service a mirror Service stands for.
	LabelMirrorOf = "ewgw.io/mirror-of"
	// LabelReplica names the gateway replica whose addresses an
	// EndpointSlice holds.
	LabelReplica = "ewgw.io/replica"
	// SliceManager is the endpointslice.kubernetes.io/managed-by value of
	// mirror EndpointSlices, so the EndpointSlice controller leaves them
	// alone. A label value may not hold a "/", so it is written as a domain,
	// like the controller's own endpointslice-controller.k8s.io.
	SliceManager = "mirror.ewgw.io"
)

// DefaultSuffix is Config.Suffix's default: web in shop is mirrored as
// web-global.
const DefaultSuffix = "global"

// LabelImport, set to "true" on a namespace, opts it in to mirrors
// (Config.Namespaces lists others). No kube-* namespace is ever mirrored
// into, whatever it says.
const LabelImport = "ewgw.io/import"

// DefaultMaxServices is Config.MaxServices's default: a peer's catalogue
// cannot make this replica write more mirrors than that.
const DefaultMaxServices = 1000

const (
	// sliceHashLen hex digits of SHA-256 tell slices apart: 40 bits, so two
	// replicas of one mirror collide with odds of about 1 in 10^12.
	sliceHashLen = 10
	v6Suffix     = "-v6"
	// maxSlicePrefix keeps <prefix>-<hash>-v6 within a DNS-1123 label.
	maxSlicePrefix = validation.DNS1123LabelMaxLength - 1 - sliceHashLen - len(v6Suffix)
)

// mirrorName returns <name>-<suffix>, or an error when that is not a valid
// DNS-1035 label (Service names must be, and at most 63 characters).
func mirrorName(name, suffix string) (string, error) {
	n := name + "-" + suffix
	if errs := validation.IsDNS1035Label(n); len(errs) > 0 {
		return "", fmt.Errorf("mirror name %q: %s", n, strings.Join(errs, "; "))
	}
	return n, nil
}

// sliceName names the EndpointSlice of mirror for replica and one address
// family: <mirror>-<hash>, plus -v6 for IPv6. The hash covers both the mirror
// and the replica, so a mirror name shortened to fit 63 characters never
// makes two mirrors' slices share a name.
func sliceName(mirror, replica string, v6 bool) string {
	sum := sha256.Sum256([]byte(mirror + "\x00" + replica))
	prefix := mirror
	if len(prefix) > maxSlicePrefix {
		prefix = prefix[:maxSlicePrefix]
	}
	n := prefix + "-" + hex.EncodeToString(sum[:])[:sliceHashLen]
	if v6 {
		n += v6Suffix
	}
	return n
}

// portName names a mirror port, in the Service and in the EndpointSlices.
func portName(port uint16) string { return fmt.Sprintf("tcp-%d", port) }
