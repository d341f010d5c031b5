//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"

	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// gatewayUser is the gateway's ServiceAccount (deploy/base).
const gatewayUser = "system:serviceaccount:ewgw:ewgw"

// rbac removes a verb from a ClusterRole of the deploy manifests, then
// waits until the apiserver's authorizer denies it to the gateway.
func (r *runner) rbac(ctx context.Context, s *rbacStep) error {
	c, err := findCluster(r.e, s.Cluster)
	if err != nil {
		return err
	}
	api := c.cs.RbacV1().ClusterRoles()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		role, err := api.Get(ctx, s.ClusterRole, metav1.GetOptions{})
		if err != nil {
			return err
		}
		found := false
		for i, rule := range role.Rules {
			if slices.Contains(rule.APIGroups, s.Remove.Group) && slices.Contains(rule.Resources, s.Remove.Resource) && slices.Contains(rule.Verbs, s.Remove.Verb) {
				if role.Rules[i], err = withoutVerb(rule, s.Remove.Verb); err != nil {
					return err
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("clusterrole %s grants no %s on %s.%s", s.ClusterRole, s.Remove.Verb, s.Remove.Resource, s.Remove.Group)
		}
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return len(r.Verbs) == 0 })
		_, err = api.Update(ctx, role, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	attr := authzv1.ResourceAttributes{Verb: s.Remove.Verb, Group: s.Remove.Group, Resource: s.Remove.Resource}
	if r.revoked == nil {
		r.revoked = map[string][]authzv1.ResourceAttributes{}
	}
	r.revoked[c.name] = append(r.revoked[c.name], attr)
	r.changed("rbac: removed " + s.Remove.Verb + " " + s.Remove.Resource)
	return waitAllowed(ctx, c, attr, false)
}

// withoutVerb is rule without verb. A rule naming several resources
// would lose the verb for all of them, so it is refused: the scenarios take
// a verb from one resource's rule.
func withoutVerb(rule rbacv1.PolicyRule, verb string) (rbacv1.PolicyRule, error) {
	if len(rule.Resources) != 1 {
		return rule, fmt.Errorf("rule %v names several resources", rule.Resources)
	}
	out := *rule.DeepCopy()
	out.Verbs = slices.DeleteFunc(out.Verbs, func(v string) bool { return v == verb })
	return out, nil
}

// waitAllowed polls SubjectAccessReviews for the gateway's user until
// the authorizer's answer for attr is allowed: RBAC changes reach the
// authorizer through its informers, not at once.
func waitAllowed(ctx context.Context, c *cluster, attr authzv1.ResourceAttributes, allowed bool) error {
	return poll(ctx, fmt.Sprintf("%s: %s may %s %s.%s = %v", c.name, gatewayUser, attr.Verb, attr.Resource, attr.Group, allowed), func() (bool, error) {
		a := attr
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: gatewayUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ewgw", "system:authenticated"},
			ResourceAttributes: &a}}
		res, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return res.Status.Allowed == allowed, nil
	})
}

// deploy applies the cluster's gateway manifests again (restoring what an
// rbac step took) and waits until the authorizer grants it again.
func (r *runner) deploy(ctx context.Context, s *clusterStep) error {
	c, err := findCluster(r.e, s.Cluster)
	if err != nil {
		return err
	}
	if err := deployGateway(ctx, c); err != nil {
		return err
	}
	r.changed("deploy " + c.name)
	for _, attr := range r.revoked[c.name] {
		if err := waitAllowed(ctx, c, attr, true); err != nil {
			return err
		}
	}
	delete(r.revoked, c.name)
	return r.reconcile(ctx, c)
}
