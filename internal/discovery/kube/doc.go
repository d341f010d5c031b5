// Package kube is the Kubernetes discovery source: it watches Services,
// discovery.k8s.io/v1 EndpointSlices and, where the CRD is installed, MCS
// ServiceExports (multicluster.x-k8s.io), and reports whole snapshots of
// []route.Service to a callback, the same shape as the static file source.
// Together with its sibling packages under internal/discovery it is the only
// importer of k8s.io packages.
//
// # Conversion
//
// API objects are slimmed as they enter the informer caches (managed fields,
// labels, annotations and fields the gateway does not read are dropped) and
// converted at once to small internal structs; the routing model is built
// from those:
//
//   - ExternalName services are skipped, and so are services without a TCP
//     port (the gateway carries TCP only) and the Services of the gateway's
//     own import mirror (labelled app.kubernetes.io/managed-by=ewgw and
//     ewgw.io/mirror-of), whose endpoints are the gateway itself.
//   - A service's ports are its TCP spec.ports, in spec order (the first is
//     the default port), keyed by the service port number.
//   - The endpoints of a port come from the EndpointSlices labelled
//     kubernetes.io/service-name=<service>, matched by port name: a slice
//     port matches a service port of the same name, both possibly empty for
//     single-port services. An endpoint is its first address (the addresses
//     of one endpoint are fungible, as kube-proxy treats them) with the slice
//     port's number, which is the target port.
//   - Only ready endpoints route (conditions.ready nil counts as ready, as
//     the API documents). As in kube-proxy, a port without a ready endpoint
//     falls back to the endpoints that are serving and terminating, so
//     connections keep flowing while the last pods drain.
//   - FQDN slices are skipped; IPv4 and IPv6 slices both count. An address
//     in several slices is listed once, and endpoints are sorted, so equal
//     states give equal snapshots.
//   - A service is exported when a ServiceExport of the same namespace and
//     name exists or its annotation ewgw.io/export is "true"; otherwise it
//     is cluster-local. v1alpha1 ServiceExports are preferred (most installs
//     serve them), v1beta1 are used where only they are served; when
//     neither is (checked with the discovery API at start), only the
//     annotation exports.
//   - route.Service.Policy is route.ParseAnnotations of the service's
//     annotations; an annotation that does not parse is logged at Warn,
//     counted in ewgw_discovery_annotation_errors_total, and the service
//     keeps the gateway's default policy.
//   - The snapshot is sorted by namespace/name.
//
// # Updates
//
// Informer events mark the services they touch dirty. A change is reported
// at once when the previous snapshot is at least Config.Debounce old, else
// when that interval has passed, so there is at most one snapshot per
// interval and the last change is never lost. Only the touched services are
// converted again, and a snapshot equal to the previous one is not reported.
//
// # Permissions
//
// Before starting the informers, Source.Run asks the apiserver
// (SelfSubjectAccessReview) whether it may list and watch services,
// endpointslices.discovery.k8s.io and, when served,
// serviceexports.multicluster.x-k8s.io, in the configured namespace or
// cluster-wide, and fails with one RBACError naming every missing
// permission, rather than starting informers that would stay empty.
package kube
