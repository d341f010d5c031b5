package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// mcsGroup is the MCS API group; exportVersions are the ServiceExport
// versions the source can watch, preferred first.
const mcsGroup = "multicluster.x-k8s.io"

var exportVersions = []string{"v1alpha1", "v1beta1"}

// Permission is one verb on one resource.
type Permission struct {
	Verb     string
	Group    string // "" for the core group
	Resource string
}

// String returns "verb resource.group", the way RBAC rules name it.
func (p Permission) String() string {
	if p.Group == "" {
		return p.Verb + " " + p.Resource
	}
	return p.Verb + " " + p.Resource + "." + p.Group
}

// RBACError reports every permission the source needs and lacks.
type RBACError struct {
	// User is the authenticated user name, e.g.
	// system:serviceaccount:ewgw:ewgw.
	User string
	// Namespace is where the permissions were checked; "" for all
	// namespaces.
	Namespace string
	Missing   []Permission
}

// Error names the user, every missing permission and where to grant them.
func (e *RBACError) Error() string {
	scope, grant := "(all namespaces)", "grant them in the ClusterRole"
	if e.Namespace != "" {
		scope = "(namespace " + e.Namespace + ")"
		grant = "grant them in a Role or ClusterRole bound in namespace " + e.Namespace
	}
	parts := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		parts[i] = "may not " + p.String() + " " + scope
	}
	return fmt.Sprintf("kubernetes RBAC: %s %s: %s", e.User, strings.Join(parts, ", "), grant)
}

// preflight finds the ServiceExport version to watch ("" for none) and
// checks that every list and watch the informers will make is allowed.
func (s *Source) preflight(ctx context.Context) (exportVersion string, err error) {
	needs := []Permission{
		{Verb: "list", Resource: "services"},
		{Verb: "watch", Resource: "services"},
		{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
		{Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"},
	}
	if s.cfg.MCS != nil {
		if exportVersion, err = servedVersion(ctx, s.cfg.Client.Discovery(), mcsGroup, "serviceexports", exportVersions); err != nil {
			return "", err
		}
	}
	switch {
	case exportVersion != "":
		needs = append(needs,
			Permission{Verb: "list", Group: mcsGroup, Resource: "serviceexports"},
			Permission{Verb: "watch", Group: mcsGroup, Resource: "serviceexports"})
	case s.cfg.MCS != nil:
		s.log.Info("ServiceExport CRD not installed: only the ewgw.io/export annotation exports services", "group", mcsGroup)
	default:
		s.log.Info("no MCS client: only the ewgw.io/export annotation exports services")
	}
	var missing []Permission
	for _, p := range needs {
		ok, err := s.allowed(ctx, p)
		if err != nil {
			return "", err
		}
		if !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "", &RBACError{User: s.whoami(ctx), Namespace: s.cfg.Namespace, Missing: missing}
	}
	return exportVersion, nil
}

// allowed asks the apiserver whether the client may use p in the
// configured namespace (all namespaces when empty).
func (s *Source) allowed(ctx context.Context, p Permission) (bool, error) {
	review := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: s.cfg.Namespace, Verb: p.Verb, Group: p.Group, Resource: p.Resource},
	}}
	res, err := s.cfg.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("kube: access review for %s: %w", p, err)
	}
	return res.Status.Allowed, nil
}

// whoami returns the client's user name, for error messages only.
func (s *Source) whoami(ctx context.Context) string {
	res, err := s.cfg.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || res.Status.UserInfo.Username == "" {
		return "the gateway's credentials"
	}
	return res.Status.UserInfo.Username
}

// servedVersion returns the first of versions in which the apiserver serves
// resource of group, or "" when it serves none.
func servedVersion(ctx context.Context, d discovery.ServerResourcesInterfaceWithContext, group, resource string, versions []string) (string, error) {
	for _, v := range versions {
		list, err := d.ServerResourcesForGroupVersionWithContext(ctx, group+"/"+v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("kube: discover %s/%s: %w", group, v, err)
		}
		if slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == resource }) {
			return v, nil
		}
	}
	return "", nil
}
