package deploy_test

import (
	"fmt"
	"net"
	"path"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/config"
)

// variant is one kustomization the repository ships and what it must
// render to.
type variant struct {
	dir      string // relative to deploy/
	kind     string // the workload: Deployment or DaemonSet
	identity string // "secret" (ewgw-identity), "ca" (ewgw-ca and ewgw-identity), "csi" (SPIFFE CSI driver) or "cm-csi" (csi-driver-spiffe)
	imports  bool   // discovery.import and the ClusterRole ewgw-import
	// passthrough: the opt-in public SNI passthrough, its LoadBalancer and
	// its config.
	passthrough bool
	// tcpOnly: the peering surface on TCP only (peering.transport tcp);
	// the others publish QUIC and the TCP transport on one port number.
	tcpOnly bool
}

var variants = []variant{
	{dir: ".", kind: "Deployment", identity: "secret"},
	{dir: "variants/certs-secret", kind: "Deployment", identity: "secret"},
	{dir: "variants/daemonset", kind: "DaemonSet", identity: "secret"},
	{dir: "variants/spiffe-csi", kind: "Deployment", identity: "csi"},
	{dir: "variants/ca-secret", kind: "Deployment", identity: "ca"},
	{dir: "variants/cert-manager-csi", kind: "Deployment", identity: "cm-csi"},
	{dir: "variants/import", kind: "Deployment", identity: "secret", imports: true},
	{dir: "variants/tcp-only", kind: "Deployment", identity: "secret", tcpOnly: true},
	{dir: "examples/cluster-a", kind: "Deployment", identity: "secret", imports: true},
	{dir: "examples/cluster-b", kind: "Deployment", identity: "secret", imports: true},
	{dir: "examples/custom", kind: "DaemonSet", identity: "csi", imports: true},
	{dir: "examples/public-passthrough", kind: "Deployment", identity: "secret", passthrough: true},
}

const (
	namespace    = "ewgw"
	certsDir     = "/var/run/ewgw/certs"
	spiffeSocket = "unix:///spiffe-workload-api/spire-agent.sock"
	adminPort    = 15000
)

// rendered is a variant's output: the raw YAML and its objects, typed.
type rendered struct {
	yaml     []byte
	objects  []runtime.Object
	workload *corev1.PodTemplateSpec
	config   *config.Config
}

func TestRender(t *testing.T) {
	ids := identities(t)
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			r := render(t, v.dir)
			checkWorkload(t, v, r)
			checkConfig(t, v, r, ids)
			checkRBAC(t, v, r)
			checkSurfaces(t, v, r)
		})
	}
}

// TestPodTemplatesInStep keeps the two workloads' pod templates equal but
// for placement, since kustomize cannot derive one kind from the other.
func TestPodTemplatesInStep(t *testing.T) {
	dep := render(t, "variants/certs-secret").workload.DeepCopy()
	ds := render(t, "variants/daemonset").workload.DeepCopy()
	if ds.Spec.NodeSelector["ewgw.io/gateway"] != "true" {
		t.Errorf("DaemonSet nodeSelector = %v, want ewgw.io/gateway=true", ds.Spec.NodeSelector)
	}
	if len(dep.Spec.TopologySpreadConstraints) != 2 {
		t.Errorf("Deployment has %d topology spread constraints, want zone and hostname", len(dep.Spec.TopologySpreadConstraints))
	}
	dep.Spec.TopologySpreadConstraints = nil
	ds.Spec.NodeSelector, ds.Spec.Tolerations = nil, nil
	if !equalJSON(t, dep, ds) {
		t.Errorf("pod templates differ beyond placement:\nDeployment: %s\nDaemonSet:  %s", mustJSON(t, dep), mustJSON(t, ds))
	}
}

func checkWorkload(t *testing.T, v variant, r rendered) {
	t.Helper()
	var kinds []string
	for _, o := range r.objects {
		switch o.(type) {
		case *appsv1.Deployment, *appsv1.DaemonSet:
			kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		}
	}
	if !slices.Equal(kinds, []string{v.kind}) {
		t.Fatalf("workloads %v, want exactly one %s", kinds, v.kind)
	}
	spec := r.workload.Spec
	c := spec.Containers[0]
	sc, psc := c.SecurityContext, spec.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatal("no pod or container securityContext")
	case !ptrIs(psc.RunAsNonRoot, true) || !ptrIs(psc.RunAsUser, 65532):
		t.Error("pod must run as non-root user 65532")
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod seccompProfile must be RuntimeDefault")
	case !ptrIs(sc.ReadOnlyRootFilesystem, true) || !ptrIs(sc.AllowPrivilegeEscalation, false):
		t.Error("container needs readOnlyRootFilesystem and no privilege escalation")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("container must drop ALL capabilities and add none")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe: want GET %s on port admin", name, want)
		}
	}
	if port := containerPort(c, "admin"); port != adminPort {
		t.Errorf("admin containerPort = %d, want %d", port, adminPort)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container needs cpu requests and memory limits")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, field := range map[string]string{"POD_IP": "status.podIP", "POD_IPS": "status.podIPs", "POD_NAME": "metadata.name", "POD_UID": "metadata.uid"} {
		if env[name] != field {
			t.Errorf("env %s: downward API %q, want %q", name, env[name], field)
		}
	}
}

// checkConfig checks the ConfigMap the workload mounts: it exists under the
// name kustomize gave it, holds a config the gateway accepts, and points at
// what the pod mounts.
func checkConfig(t *testing.T, v variant, r rendered, ids map[string]*certgen.Cluster) {
	t.Helper()
	cfg := r.config
	if host, port, _ := net.SplitHostPort(cfg.Admin.Listen); !slices.Contains([]string{"", "0.0.0.0", "::"}, host) || port != "15000" {
		t.Errorf("admin.listen %q: the kubelet's probes need :15000 on the pod's address", cfg.Admin.Listen)
	}
	if cfg.Discovery.Kubernetes == nil || cfg.Discovery.Kubernetes.Kubeconfig != "" {
		t.Error("discovery.kubernetes must use the in-cluster config")
	}
	if got := cfg.Discovery.Import != nil; got != v.imports {
		t.Errorf("discovery.import set = %v, want %v", got, v.imports)
	}
	grace := time.Duration(ptrVal(r.workload.Spec.TerminationGracePeriodSeconds)) * time.Second
	if pre := preStopSleep(r.workload); grace <= cfg.DrainTimeout.D()+pre {
		t.Errorf("terminationGracePeriodSeconds %v must exceed drain_timeout %v plus the preStop pause %v", grace, cfg.DrainTimeout.D(), pre)
	}
	if cfg.Peering == nil {
		t.Fatal("no peering section")
	}
	mounts := map[string]corev1.Volume{}
	for _, m := range r.workload.Spec.Containers[0].VolumeMounts {
		for _, vol := range r.workload.Spec.Volumes {
			if vol.Name == m.Name {
				mounts[m.MountPath] = vol
			}
		}
	}
	switch id := cfg.Peering.Identity; v.identity {
	case "secret":
		vol := mounts[certsDir]
		if vol.Secret == nil || vol.Secret.SecretName != certgen.SecretIdentity {
			t.Fatalf("%s: want the Secret %s mounted, got %+v", certsDir, certgen.SecretIdentity, vol)
		}
		if id.Files == nil {
			t.Fatal("peering.identity.files not set")
		}
		checkIdentityFiles(t, cfg, ids[cfg.Cluster])
	case "ca":
		checkCA(t, cfg, mounts, r.workload, ids[cfg.Cluster])
	case "cm-csi":
		checkCertManagerCSI(t, cfg, mounts)
	case "csi":
		vol := mounts["/spiffe-workload-api"]
		if vol.CSI == nil || vol.CSI.Driver != "csi.spiffe.io" {
			t.Fatalf("/spiffe-workload-api: want a csi.spiffe.io volume, got %+v", vol)
		}
		if id.WorkloadAPI == nil || id.WorkloadAPI.Socket != spiffeSocket {
			t.Errorf("peering.identity.workload_api.socket: want %s", spiffeSocket)
		}
	}
}

// checkIdentityFiles checks that the config reads exactly the files that
// `ewgw certs` puts in the Secret ewgw-identity for this cluster.
func checkIdentityFiles(t *testing.T, cfg *config.Config, c *certgen.Cluster) {
	t.Helper()
	if c == nil {
		t.Fatalf("cluster %q: not one `ewgw certs` made in this test", cfg.Cluster)
	}
	keys := map[string]bool{}
	for _, f := range c.IdentityFiles() {
		keys[f.Name] = true
	}
	files := cfg.Peering.Identity.Files
	want := map[string]string{"cert_chain": certgen.FileSVID, "key": certgen.FileSVIDKey}
	for field, p := range map[string]string{"cert_chain": files.CertChain, "key": files.Key} {
		if p != path.Join(certsDir, want[field]) {
			t.Errorf("identity.files.%s = %s, want %s", field, p, path.Join(certsDir, want[field]))
		}
	}
	for _, td := range c.TrustDomains() {
		want := path.Join(certsDir, certgen.BundleFile(c.TrustDomain, td))
		if got := files.Bundles[td]; got != want {
			t.Errorf("identity.files.bundles[%s] = %q, want %s", td, got, want)
		}
	}
	for td, p := range files.Bundles {
		if dir, name := path.Split(p); path.Clean(dir) != certsDir || !keys[name] {
			t.Errorf("identity.files.bundles[%s] = %s: not a file of the Secret %s", td, p, certgen.SecretIdentity)
		}
	}
}

// checkRBAC checks that the write verbs come only with import.
func checkRBAC(t *testing.T, v variant, r rendered) {
	t.Helper()
	var roles []string
	for _, o := range r.objects {
		if cr, ok := o.(*rbacv1.ClusterRole); ok {
			roles = append(roles, cr.Name)
			for _, rule := range cr.Rules {
				if cr.Name == "ewgw" && slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "list" && v != "watch" }) {
					t.Errorf("ClusterRole ewgw grants %v on %v: it must stay read-only", rule.Verbs, rule.Resources)
				}
			}
		}
	}
	want := []string{"ewgw"}
	if v.imports {
		want = append(want, "ewgw-import")
	}
	if slices.Sort(roles); !slices.Equal(roles, want) {
		t.Errorf("ClusterRoles %v, want %v", roles, want)
	}
}

// checkSurfaces checks who may reach what (docs/security.md): the only
// LoadBalancer carries the peering surface, QUIC on UDP, to the port the
// config's tunnel binds; the client surface is a ClusterIP Service (node
// local for the DaemonSet); the admin port is on no Service and admits only
// the monitoring namespace; the public passthrough exists only where asked,
// with source ranges, and its config turns it on.
func checkSurfaces(t *testing.T, v variant, r rendered) {
	t.Helper()
	c := r.workload.Spec.Containers[0]
	peerPort := r.config.Peering.Listen
	if peerPort == "" {
		peerPort = r.config.Listen
	}
	wantLB := map[string][]corev1.Protocol{"ewgw-peering": {corev1.ProtocolUDP, corev1.ProtocolTCP}}
	if v.tcpOnly {
		wantLB["ewgw-peering"] = []corev1.Protocol{corev1.ProtocolTCP}
	}
	if v.passthrough {
		wantLB["ewgw-passthrough"] = []corev1.Protocol{corev1.ProtocolTCP}
	}
	var clientSvc *corev1.Service
	for _, o := range r.objects {
		svc, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.String() == "admin" || p.Port == adminPort {
				t.Errorf("Service %s publishes the admin port", svc.Name)
			}
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			if svc.Name == "ewgw" {
				clientSvc = svc
			}
			continue
		}
		protos, ok := wantLB[svc.Name]
		if !ok {
			t.Errorf("LoadBalancer Service %s: only the peering surface (and the opt-in passthrough) may be public", svc.Name)
			continue
		}
		delete(wantLB, svc.Name)
		var got []corev1.Protocol
		for _, p := range svc.Spec.Ports {
			got = append(got, p.Protocol)
		}
		if !slices.Equal(got, protos) {
			t.Errorf("LoadBalancer %s publishes %v, want %v", svc.Name, got, protos)
		}
		switch svc.Name {
		case "ewgw-peering":
			checkPeering(t, v, r, svc, peerPort)
		case "ewgw-passthrough":
			if len(svc.Spec.LoadBalancerSourceRanges) == 0 {
				t.Error("the public passthrough's LoadBalancer needs loadBalancerSourceRanges")
			}
			_, port, _ := net.SplitHostPort(r.config.PublicPassthrough.Listen)
			if got := namedPort(c, "passthrough"); got.Protocol != corev1.ProtocolTCP || fmt.Sprint(got.ContainerPort) != port {
				t.Errorf("container port passthrough %d/%s, but public_passthrough.listen is %q", got.ContainerPort, got.Protocol, r.config.PublicPassthrough.Listen)
			}
		}
	}
	for name := range wantLB {
		t.Errorf("no LoadBalancer Service %s", name)
	}
	if got := r.config.PublicPassthrough.Listen != ""; got != v.passthrough {
		t.Errorf("public_passthrough on = %v, want %v", got, v.passthrough)
	}
	switch {
	case clientSvc == nil:
		t.Error("no Service ewgw for the client surface")
	case clientSvc.Spec.Type != corev1.ServiceTypeClusterIP:
		t.Errorf("Service ewgw is %s, want ClusterIP", clientSvc.Spec.Type)
	case len(clientSvc.Spec.Ports) != 1 || clientSvc.Spec.Ports[0].Protocol != corev1.ProtocolTCP || clientSvc.Spec.Ports[0].TargetPort.String() != "tls":
		t.Errorf("Service ewgw ports %+v, want the container port tls (TCP) only", clientSvc.Spec.Ports)
	case (v.kind == "DaemonSet") != (ptrVal(clientSvc.Spec.InternalTrafficPolicy) == corev1.ServiceInternalTrafficPolicyLocal):
		t.Errorf("Service ewgw internalTrafficPolicy %v: Local for the DaemonSet only", ptrVal(clientSvc.Spec.InternalTrafficPolicy))
	}
	checkAdminPolicy(t, r)
}

// checkPeering checks that ewgw-peering publishes, on one port number, the
// container ports the config's peering surface listens on: quic (UDP,
// peering.listen) and peering-tcp (TCP, peering.tcp_listen), or the latter
// alone with peering.transport tcp.
func checkPeering(t *testing.T, v variant, r rendered, svc *corev1.Service, peerPort string) {
	t.Helper()
	c := r.workload.Spec.Containers[0]
	want := map[string]string{"quic": peerPort, "peering-tcp": r.config.Peering.TCPListen}
	if v.tcpOnly {
		delete(want, "quic")
		if r.config.Peering.Transport != "tcp" {
			t.Errorf("ewgw-peering publishes TCP only, but peering.transport is %q", r.config.Peering.Transport)
		}
	} else if r.config.Peering.Transport != "auto" {
		t.Errorf("peering.transport %q behind a LoadBalancer that publishes both, want auto", r.config.Peering.Transport)
	}
	for _, p := range svc.Spec.Ports {
		name := p.TargetPort.String()
		addr, ok := want[name]
		if !ok {
			t.Errorf("ewgw-peering publishes %s", name)
			continue
		}
		delete(want, name)
		_, port, _ := net.SplitHostPort(addr)
		if cp := namedPort(c, name); cp.Protocol != p.Protocol || fmt.Sprint(cp.ContainerPort) != port || p.Port != svc.Spec.Ports[0].Port {
			t.Errorf("ewgw-peering port %d/%s targets %s (%d/%s), want the config's %s on one public port number",
				p.Port, p.Protocol, name, cp.ContainerPort, cp.Protocol, addr)
		}
	}
	for name := range want {
		t.Errorf("ewgw-peering does not publish %s", name)
	}
}

// checkAdminPolicy checks that NetworkPolicy admits the admin port from the
// monitoring namespace only, and the client surface from the cluster only.
func checkAdminPolicy(t *testing.T, r rendered) {
	t.Helper()
	var base *networkingv1.NetworkPolicy
	for _, o := range r.objects {
		if np, ok := o.(*networkingv1.NetworkPolicy); ok {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && p.Port.IntValue() == adminPort && np.Name != "ewgw" {
						t.Errorf("NetworkPolicy %s admits the admin port", np.Name)
					}
				}
			}
			if np.Name == "ewgw" {
				base = np
			}
		}
	}
	if base == nil {
		t.Fatal("no NetworkPolicy ewgw")
	}
	for _, rule := range base.Spec.Ingress {
		for _, p := range rule.Ports {
			switch {
			case p.Port == nil:
				t.Error("a NetworkPolicy rule admits every port")
			case p.Port.IntValue() == adminPort:
				if len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil || rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
					t.Errorf("admin port admitted from %+v, want the monitoring namespace only", rule.From)
				}
			case ptrVal(p.Protocol) == corev1.ProtocolTCP && p.Port.String() == fmt.Sprint(namedPort(r.workload.Spec.Containers[0], "peering-tcp").ContainerPort):
				// The TCP transport: the peering surface, open to all.
			case ptrVal(p.Protocol) == corev1.ProtocolTCP:
				if len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(f networkingv1.NetworkPolicyPeer) bool { return f.IPBlock != nil }) {
					t.Errorf("client surface TCP %d admitted from outside the cluster: %+v", p.Port.IntValue(), rule.From)
				}
			}
		}
	}
}
