//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// loadBalancers does a cloud load balancer's work for the cluster's
// Services of type LoadBalancer: their ports, and only those, answer on
// the cluster's public address (wan0). Everything else arriving on wan0 is
// refused (TCP reset, ICMP unreachable) unless it belongs to a connection
// the cluster opened. The rules come from the Services the apiserver holds,
// so what the suite attacks is what deploy/ publishes. Called with k.mu
// held.
func (k *kubelet) loadBalancers(ctx context.Context) error {
	svcs, err := k.c.cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var accept, nat []string
	for _, svc := range svcs.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, p := range svc.Spec.Ports {
			target, err := k.targetPort(&svc, p)
			if err != nil {
				return err
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			if target != p.Port {
				nat = append(nat, fmt.Sprintf("-A PREROUTING -i wan0 -p %s --dport %d -j REDIRECT --to-ports %d", proto, p.Port, target))
			}
			accept = append(accept, fmt.Sprintf("-A INPUT -i wan0 -p %s --dport %d -j ACCEPT", proto, target))
		}
	}
	slices.Sort(accept)
	slices.Sort(nat)
	rules := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		strings.Join(append(nat, "COMMIT"), "\n") + "\n" +
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n" +
		"-A INPUT -i wan0 -p icmp -j ACCEPT\n" +
		strings.Join(accept, "\n") + "\n" +
		"-A INPUT -i wan0 -p tcp -j REJECT --reject-with tcp-reset\n" +
		"-A INPUT -i wan0 -j REJECT\n" +
		"COMMIT\n"
	if rules == k.lbRules {
		return nil
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", k.site.ns, "iptables-legacy-restore")
	cmd.Stdin = strings.NewReader(rules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: load balancer rules: %w: %s", k.c.name, err, stderr.Bytes())
	}
	k.lbRules = rules
	return nil
}

// targetPort resolves a Service port's target to a number: as given, the
// service port itself when unset, or a named container port of a pod the
// Service selects.
func (k *kubelet) targetPort(svc *corev1.Service, p corev1.ServicePort) (int32, error) {
	switch {
	case p.TargetPort.IntValue() != 0:
		return int32(p.TargetPort.IntValue()), nil
	case p.TargetPort.String() == "" || p.TargetPort.String() == "0":
		return p.Port, nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, pod := range k.pods {
		if len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(pod.obj.Labels)) {
			continue
		}
		for _, c := range pod.obj.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.TargetPort.String() && cp.Protocol == p.Protocol {
					return cp.ContainerPort, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("service %s/%s: no pod has container port %q", svc.Namespace, svc.Name, p.TargetPort.String())
}
