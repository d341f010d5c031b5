//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// kubelet stands in for what a cluster runs besides its apiserver, which
// the local suite does not have: the controllers (Deployment, EndpointSlice,
// ServiceAccount, root CA publisher) and the kubelet. It works from the
// objects in the API: a Deployment with a replica gets a Pod object (so
// admission, Pod Security included, sees the real pod spec) and a process
// in the cluster's network namespace, run with that spec's image, args,
// environment (downward API included), volumes (ConfigMaps, Secrets, the
// ServiceAccount token projected by admission) mounted at their paths in a
// mount namespace of its own, user and group; once its readiness probe
// passes, the Services selecting it get an EndpointSlice with its address.
//
// What it does not do: more than one replica per Deployment, restarts
// nobody asked for (a killed container stays down until started), image
// pulls (images map to local binaries), per-pod network namespaces (the
// pods of a cluster share the cluster's, each with its own address on lo).
type kubelet struct {
	c      *cluster
	site   site
	dir    string
	images map[string]image
	// apiHost and apiPort are KUBERNETES_SERVICE_HOST and _PORT.
	apiHost, apiPort string
	caPEM            []byte

	mu       sync.Mutex
	pods     map[string]*pod // by namespace/deployment
	hostDirs []string        // mount points created on the host, removed by close

	addrMu sync.Mutex // not mu: read while sync runs
	addrs  map[string]netip.Addr

	lbRules string // the load balancer rules in force (loadBalancers)
}

// image is how the local suite runs a container image: a local executable
// and the image's default arguments (its CMD).
type image struct {
	path string
	args []string
}

// pod is one Deployment's pod and its container's process.
type pod struct {
	deployment string
	obj        *corev1.Pod
	ip         netip.Addr
	proc       *process
	ready      bool
	restarts   int32
}

// sliceManager marks the EndpointSlices the stand-in writes.
const sliceManager = "kubelet.e2e.ewgw.io"

// sync makes the cluster's pods and EndpointSlices match its Deployments
// and Services. Pods going away leave the slices before their process
// stops; pods coming up enter them once ready.
func (k *kubelet) sync(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.namespaceDefaults(ctx); err != nil {
		return err
	}
	deps, err := k.c.cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	want := map[string]*appsv1.Deployment{}
	for i := range deps.Items {
		d := &deps.Items[i]
		n := int32(1)
		if d.Spec.Replicas != nil {
			n = *d.Spec.Replicas
		}
		if n > 1 {
			return fmt.Errorf("%s: deployment %s/%s has %d replicas; the local suite runs at most one", k.c.name, d.Namespace, d.Name, n)
		}
		if n == 1 {
			want[d.Namespace+"/"+d.Name] = d
		}
	}
	var leaving []*pod
	for key, p := range k.pods {
		if want[key] == nil {
			p.ready = false
			leaving = append(leaving, p)
			delete(k.pods, key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		if k.pods[key] == nil {
			if err := k.createPod(ctx, key, want[key]); err != nil {
				return err
			}
		}
	}
	if err := k.publish(ctx); err != nil {
		return err
	}
	if err := k.loadBalancers(ctx); err != nil {
		return err
	}
	for _, p := range leaving {
		terminate(ctx, p)
		err := k.c.cs.CoreV1().Pods(p.obj.Namespace).Delete(ctx, p.obj.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// namespaceDefaults does the ServiceAccount and root-CA-publisher
// controllers' work: every namespace has a ServiceAccount "default" and the
// ConfigMap kube-root-ca.crt, which admission and the projected
// ServiceAccount token volume expect.
func (k *kubelet) namespaceDefaults(ctx context.Context) error {
	nss, err := k.c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
		if _, err := k.c.cs.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: ns.Name},
			Data: map[string]string{"ca.crt": string(k.caPEM)}}
		if _, err := k.c.cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// podAddr gives a Deployment the same address in every cluster (a hash of
// its namespace and name in 10.244.0.0/16): pod CIDRs overlap, and so do
// the addresses of same-named pods.
func (k *kubelet) podAddr(key string) (netip.Addr, error) {
	k.addrMu.Lock()
	defer k.addrMu.Unlock()
	if a, ok := k.addrs[key]; ok {
		return a, nil
	}
	h := fnv.New32a()
	io.WriteString(h, key)
	n := h.Sum32()
	for {
		a := netip.AddrFrom4([4]byte{10, 244, byte(1 + n>>8%254), byte(1 + n%254)})
		if !slices.Contains(slices.Collect(maps.Values(k.addrs)), a) {
			if err := ip("-n", k.site.ns, "addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
				return netip.Addr{}, err
			}
			k.addrs[key] = a
			return a, nil
		}
		n++
	}
}

// createPod creates d's Pod in the API (as the ReplicaSet controller and
// the scheduler would), starts it and waits until it is ready.
func (k *kubelet) createPod(ctx context.Context, key string, d *appsv1.Deployment) error {
	addr, err := k.podAddr(key)
	if err != nil {
		return err
	}
	tmpl := d.Spec.Template.DeepCopy()
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + randHex(5), Namespace: d.Namespace,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations,
		},
		Spec: tmpl.Spec,
	}
	obj.Spec.NodeName = k.c.name
	created, err := k.c.cs.CoreV1().Pods(d.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("%s: create pod for deployment %s: %w", k.c.name, key, err)
	}
	p := &pod{deployment: key, obj: created, ip: addr}
	k.pods[key] = p
	return k.run(ctx, p)
}

// run starts p's container and waits for its readiness probe; it records
// the result in the Pod's status, as the kubelet does.
func (k *kubelet) run(ctx context.Context, p *pod) error {
	if len(p.obj.Spec.Containers) != 1 {
		return fmt.Errorf("pod %s: the local suite runs pods of one container", p.obj.Name)
	}
	proc, err := k.startContainer(ctx, p)
	if err != nil {
		return err
	}
	p.proc = proc
	if err := k.waitReady(ctx, p); err != nil {
		return err
	}
	p.ready = true
	return k.updateStatus(ctx, p)
}

func (k *kubelet) updateStatus(ctx context.Context, p *pod) error {
	cur, err := k.c.cs.CoreV1().Pods(p.obj.Namespace).Get(ctx, p.obj.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	cond := corev1.ConditionFalse
	if p.ready {
		cond = corev1.ConditionTrue
	}
	cur.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.ip.String(), PodIPs: []corev1.PodIP{{IP: p.ip.String()}},
		HostIP: k.site.nodeIP(), StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: p.obj.Spec.Containers[0].Name, Ready: p.ready,
			RestartCount: p.restarts, Image: p.obj.Spec.Containers[0].Image}},
	}
	_, err = k.c.cs.CoreV1().Pods(p.obj.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// restart starts the container of deployment key again (after kill or
// stop), as the kubelet restarts a container: same pod, same address.
func (k *kubelet) restart(ctx context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pods[key]
	if p == nil {
		return fmt.Errorf("%s: no pod for %s", k.c.name, key)
	}
	if p.proc != nil {
		terminate(ctx, p)
	}
	p.restarts++
	return k.run(ctx, p)
}

// signal sends sig to deployment key's container and waits until it has
// exited; the pod is then not ready.
func (k *kubelet) signal(ctx context.Context, key string, sig signalKind) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pods[key]
	if p == nil || p.proc == nil {
		return fmt.Errorf("%s: %s is not running", k.c.name, key)
	}
	if sig == sigterm {
		terminate(ctx, p)
	} else {
		p.proc.stop(ctx, sig)
	}
	p.ready = false
	if err := k.updateStatus(ctx, p); err != nil {
		return err
	}
	return k.publish(ctx)
}

// addrOf returns deployment key's pod address, once it has one.
func (k *kubelet) addrOf(key string) (netip.Addr, bool) {
	k.addrMu.Lock()
	defer k.addrMu.Unlock()
	a, ok := k.addrs[key]
	return a, ok
}

// terminate stops p's container as the kubelet does: its preStop sleep
// first (the only preStop handler the manifests use), during which it
// still serves, then SIGTERM.
func terminate(ctx context.Context, p *pod) {
	if pre := p.obj.Spec.Containers[0].Lifecycle; pre != nil && pre.PreStop != nil && pre.PreStop.Sleep != nil {
		t := time.NewTimer(time.Duration(pre.PreStop.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.proc.done:
		case <-ctx.Done():
		}
	}
	p.proc.stop(ctx, sigterm)
}

// podOf returns deployment key's pod.
func (k *kubelet) podOf(key string) *pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pods[key]
}

// waitReady polls the container's readiness probe (a process boundary:
// there is nothing to wait on) until it passes, the process exits, or a
// minute passes.
func (k *kubelet) waitReady(ctx context.Context, p *pod) error {
	ctr := p.obj.Spec.Containers[0]
	probe := ctr.ReadinessProbe
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	if probe == nil {
		return nil
	}
	for {
		last := k.probe(ctx, p, probe)
		if last == nil {
			return nil
		}
		select {
		case <-p.proc.done:
			return &exitError{Code: p.proc.code, Output: p.proc.tail()}
		case <-ctx.Done():
			return fmt.Errorf("%s: pod %s not ready: %w (log %s)", k.c.name, p.obj.Name, last, p.proc.logPath)
		case <-tick.C:
		}
	}
}

// probe runs a tcpSocket or httpGet probe from the node (the cluster's
// network namespace) against the pod's address.
func (k *kubelet) probe(ctx context.Context, p *pod, probe *corev1.Probe) error {
	ctr := p.obj.Spec.Containers[0]
	dial := dialer(k.site.ns)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	switch {
	case probe.TCPSocket != nil:
		port, err := containerPort(ctr, probe.TCPSocket.Port)
		if err != nil {
			return err
		}
		c, err := dial(ctx, "tcp", netip.AddrPortFrom(p.ip, port).String())
		if err != nil {
			return err
		}
		return c.Close()
	case probe.HTTPGet != nil:
		port, err := containerPort(ctr, probe.HTTPGet.Port)
		if err != nil {
			return err
		}
		return httpGetOK(ctx, dial, "http://"+netip.AddrPortFrom(p.ip, port).String()+probe.HTTPGet.Path)
	}
	return fmt.Errorf("pod %s: unsupported readiness probe", p.obj.Name)
}

// containerPort resolves a port number or name against c's ports.
func containerPort(c corev1.Container, port intstr.IntOrString) (uint16, error) {
	if port.Type == intstr.Int {
		return uint16(port.IntVal), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return uint16(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}

// publish writes, for each Service with a selector, an EndpointSlice of
// the ready pods it selects (the EndpointSlice controller's work), and
// removes the slices of Services that went away.
func (k *kubelet) publish(ctx context.Context) error {
	svcs, err := k.c.cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, svc := range svcs.Items {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		slice, err := k.sliceFor(&svc)
		if err != nil {
			return err
		}
		keep[slice.Namespace+"/"+slice.Name] = true
		if err := putSlice(ctx, k, slice); err != nil {
			return err
		}
	}
	old, err := k.c.cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelManagedBy + "=" + sliceManager})
	if err != nil {
		return err
	}
	for _, s := range old.Items {
		if !keep[s.Namespace+"/"+s.Name] {
			if err := k.c.cs.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// sliceFor is svc's EndpointSlice: its ports resolved against the
// selected pods' containers, and those pods that are ready.
func (k *kubelet) sliceFor(svc *corev1.Service) (*discoveryv1.EndpointSlice, error) {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var pods []*pod
	for _, key := range slices.Sorted(maps.Keys(k.pods)) {
		p := k.pods[key]
		if p.obj.Namespace == svc.Namespace && p.ready && sel.Matches(labels.Set(p.obj.Labels)) {
			pods = append(pods, p)
		}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-local", Namespace: svc.Namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: sliceManager}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, sp := range svc.Spec.Ports {
		port := sp.TargetPort
		if port.Type == intstr.Int && port.IntVal == 0 {
			port = intstr.FromInt32(sp.Port)
		}
		num := int32(0)
		if port.Type == intstr.Int {
			num = port.IntVal
		} else if len(pods) > 0 {
			n, err := containerPort(pods[0].obj.Spec.Containers[0], port)
			if err != nil {
				return nil, err
			}
			num = int32(n)
		} else {
			continue // a named port with no pod to resolve it: none yet
		}
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &sp.Name, Port: &num, Protocol: &sp.Protocol})
	}
	for _, p := range pods {
		ready := true
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &p.obj.Spec.NodeName,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.obj.Namespace, Name: p.obj.Name, UID: p.obj.UID},
		})
	}
	return slice, nil
}

// putSlice creates or updates slice when it changed.
func putSlice(ctx context.Context, k *kubelet, slice *discoveryv1.EndpointSlice) error {
	api := k.c.cs.DiscoveryV1().EndpointSlices(slice.Namespace)
	cur, err := api.Get(ctx, slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, slice, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	if sameEndpoints(cur, slice) {
		return nil
	}
	cur.Endpoints, cur.Ports = slice.Endpoints, slice.Ports
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func sameEndpoints(a, b *discoveryv1.EndpointSlice) bool {
	addrs := func(s *discoveryv1.EndpointSlice) []string {
		var out []string
		for _, e := range s.Endpoints {
			out = append(out, e.Addresses...)
		}
		sort.Strings(out)
		return out
	}
	ports := func(s *discoveryv1.EndpointSlice) []string {
		var out []string
		for _, p := range s.Ports {
			out = append(out, fmt.Sprintf("%s/%d/%s", deref(p.Name), deref(p.Port), deref(p.Protocol)))
		}
		return out
	}
	return slices.Equal(addrs(a), addrs(b)) && slices.Equal(ports(a), ports(b))
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// close stops every pod and removes the mount points created on the host.
func (k *kubelet) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx := context.Background()
	for _, p := range k.pods {
		if p.proc != nil {
			p.proc.stop(ctx, sigkill)
		}
	}
	for _, d := range slices.Backward(k.hostDirs) {
		_ = os.Remove(d) // only if still empty; a mount point is
	}
}

// hostMountPoint makes sure path exists on the host as a directory (or a
// file) to mount on, remembering what it created.
func (k *kubelet) hostMountPoint(path string, file bool) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var missing []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	slices.Reverse(missing)
	k.hostDirs = append(k.hostDirs, missing...)
	if file {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		k.hostDirs = append(k.hostDirs, path)
		return f.Close()
	}
	k.hostDirs = append(k.hostDirs, path)
	return os.Mkdir(path, 0o755)
}

// underRun reports whether path lies in /run, which each container gets
// as a tmpfs of its own: mount points there are made inside it.
func underRun(path string) bool {
	return strings.HasPrefix(path, "/run/") || strings.HasPrefix(path, "/var/run/")
}
