//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startContainer runs p's container: its volumes written under the pod's
// directory and bind-mounted at their mount paths in a mount namespace of
// its own, in the cluster's network namespace, as the user the spec asks
// for.
func (k *kubelet) startContainer(ctx context.Context, p *pod) (*process, error) {
	ctr := p.obj.Spec.Containers[0]
	name, _, _ := strings.Cut(ctr.Image, ":")
	img, ok := k.images[name]
	if !ok {
		return nil, fmt.Errorf("pod %s: no local stand-in for image %s", p.obj.Name, ctr.Image)
	}
	if len(ctr.Command) > 0 {
		return nil, fmt.Errorf("pod %s: container command is not supported (args are)", p.obj.Name)
	}
	dir := filepath.Join(k.dir, "pods", p.obj.Namespace+"_"+p.obj.Name)
	vols, err := k.writeVolumes(ctx, p, dir)
	if err != nil {
		return nil, err
	}
	env, err := k.env(p, ctr)
	if err != nil {
		return nil, err
	}
	args := ctr.Args
	if len(args) == 0 {
		args = img.args
	}
	argv := []string{img.path}
	for _, a := range args {
		argv = append(argv, expand(a, env))
	}
	script, err := k.mountScript(p, ctr, vols)
	if err != nil {
		return nil, err
	}
	if user := runAs(p.obj.Spec.SecurityContext, ctr.SecurityContext); user != nil {
		argv = append(user, argv...)
	}
	full := append([]string{"netns", "exec", k.site.ns, "/bin/sh", "-ec", script, "sh"}, argv...)
	logPath := filepath.Join(dir, ctr.Name+".log")
	return startProcess(exec.Command("ip", full...), envList(env), logPath)
}

// writeVolumes writes each volume's files under dir/volumes/<name>, with
// the modes and group the spec asks for, and returns the directories.
func (k *kubelet) writeVolumes(ctx context.Context, p *pod, dir string) (map[string]string, error) {
	var group *int64
	if sc := p.obj.Spec.SecurityContext; sc != nil {
		group = sc.FSGroup
	}
	out := map[string]string{}
	for _, v := range p.obj.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		if err := os.RemoveAll(vdir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return nil, err
		}
		files, err := k.volumeFiles(ctx, p, v)
		if err != nil {
			return nil, fmt.Errorf("pod %s volume %s: %w", p.obj.Name, v.Name, err)
		}
		for _, f := range files {
			path := filepath.Join(vdir, f.path)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(path, f.data, f.mode); err != nil {
				return nil, err
			}
			if err := os.Chmod(path, f.mode); err != nil { // past the umask
				return nil, err
			}
			if group != nil {
				if err := os.Chown(path, 0, int(*group)); err != nil {
					return nil, err
				}
			}
		}
		out[v.Name] = vdir
	}
	return out, nil
}

// volumeFile is one file of a volume.
type volumeFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// volumeFiles reads a volume's content from the API: ConfigMaps, Secrets,
// and projected volumes of those, the downward API and the ServiceAccount
// token (requested for this pod, as the kubelet does).
func (k *kubelet) volumeFiles(ctx context.Context, p *pod, v corev1.Volume) ([]volumeFile, error) {
	ns := p.obj.Namespace
	switch {
	case v.ConfigMap != nil:
		cm, err := k.c.cs.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return keyFiles(stringData(cm.Data), v.ConfigMap.Items, v.ConfigMap.DefaultMode), nil
	case v.Secret != nil:
		s, err := k.c.cs.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return keyFiles(s.Data, v.Secret.Items, v.Secret.DefaultMode), nil
	case v.EmptyDir != nil:
		return nil, nil
	case v.Projected != nil:
		return k.projected(ctx, p, v.Projected)
	}
	return nil, fmt.Errorf("volume type not supported by the local suite")
}

func (k *kubelet) projected(ctx context.Context, p *pod, v *corev1.ProjectedVolumeSource) ([]volumeFile, error) {
	ns := p.obj.Namespace
	var out []volumeFile
	for _, src := range v.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			token, err := k.podToken(ctx, p, src.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			out = append(out, volumeFile{path: src.ServiceAccountToken.Path, data: []byte(token), mode: mode(nil, v.DefaultMode)})
		case src.ConfigMap != nil:
			cm, err := k.c.cs.CoreV1().ConfigMaps(ns).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			out = append(out, keyFiles(stringData(cm.Data), src.ConfigMap.Items, v.DefaultMode)...)
		case src.Secret != nil:
			s, err := k.c.cs.CoreV1().Secrets(ns).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			out = append(out, keyFiles(s.Data, src.Secret.Items, v.DefaultMode)...)
		case src.DownwardAPI != nil:
			for _, item := range src.DownwardAPI.Items {
				if item.FieldRef == nil {
					return nil, fmt.Errorf("downward API item %s: only fieldRef is supported", item.Path)
				}
				val, err := k.field(p, item.FieldRef.FieldPath)
				if err != nil {
					return nil, err
				}
				out = append(out, volumeFile{path: item.Path, data: []byte(val), mode: mode(item.Mode, v.DefaultMode)})
			}
		default:
			return nil, fmt.Errorf("projected source not supported by the local suite")
		}
	}
	return out, nil
}

// podToken is a ServiceAccount token bound to the pod (TokenRequest), the
// kubelet's projected token.
func (k *kubelet) podToken(ctx context.Context, p *pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := p.obj.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.obj.Name, UID: p.obj.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := k.c.cs.CoreV1().ServiceAccounts(p.obj.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", p.obj.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}

func stringData(m map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

// keyFiles maps data keys to files: items when given, else every key.
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) []volumeFile {
	var out []volumeFile
	if len(items) == 0 {
		for k, v := range data {
			out = append(out, volumeFile{path: k, data: v, mode: mode(nil, defaultMode)})
		}
		return out
	}
	for _, it := range items {
		out = append(out, volumeFile{path: it.Path, data: data[it.Key], mode: mode(it.Mode, defaultMode)})
	}
	return out
}

// mode is a file's mode: its own, else the volume's default, else 0644.
func mode(own, def *int32) fs.FileMode {
	switch {
	case own != nil:
		return fs.FileMode(*own)
	case def != nil:
		return fs.FileMode(*def)
	}
	return 0o644
}

// env is the container's environment: the apiserver's address as the
// kubelet gives it, then the spec's variables, downward API included.
func (k *kubelet) env(p *pod, ctr corev1.Container) ([][2]string, error) {
	env := [][2]string{
		{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		{"HOSTNAME", p.obj.Name},
		{"KUBERNETES_SERVICE_HOST", k.apiHost},
		{"KUBERNETES_SERVICE_PORT", k.apiPort},
	}
	for _, e := range ctr.Env {
		val := expand(e.Value, env)
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("pod %s: env %s: only fieldRef is supported", p.obj.Name, e.Name)
			}
			var err error
			if val, err = k.field(p, e.ValueFrom.FieldRef.FieldPath); err != nil {
				return nil, err
			}
		}
		env = append(env, [2]string{e.Name, val})
	}
	return env, nil
}

// field is a downward API field of p.
func (k *kubelet) field(p *pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.obj.Name, nil
	case "metadata.namespace":
		return p.obj.Namespace, nil
	case "metadata.uid":
		return string(p.obj.UID), nil
	case "spec.nodeName":
		return p.obj.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.obj.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return p.ip.String(), nil
	case "status.hostIP":
		return k.site.nodeIP(), nil
	}
	return "", fmt.Errorf("pod %s: downward API field %s is not supported", p.obj.Name, path)
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with the variable's value, as Kubernetes expands
// args and env values; unknown references stay as they are.
func expand(s string, env [][2]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		for i := len(env) - 1; i >= 0; i-- {
			if env[i][0] == name {
				return env[i][1]
			}
		}
		return ref
	})
}

func envList(env [][2]string) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = e[0] + "=" + e[1]
	}
	return out
}

// mountScript is the shell that sets up the container's mount namespace
// (ip netns exec gives it one, as a slave of the host's) and then execs the
// container's command: a private /run, then each volume mount, read-only
// where asked.
func (k *kubelet) mountScript(p *pod, ctr corev1.Container, vols map[string]string) (string, error) {
	lines := []string{"mount --make-rprivate /", "mount -t tmpfs -o mode=0755 pod-run /run"}
	for _, m := range ctr.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			return "", fmt.Errorf("pod %s: mount of unknown volume %s", p.obj.Name, m.Name)
		}
		file := m.SubPath != ""
		if file {
			src = filepath.Join(src, m.SubPath)
		}
		dst := path.Clean(m.MountPath)
		switch {
		case underRun(dst) && file:
			lines = append(lines, fmt.Sprintf("mkdir -p %s && touch %s", shq(path.Dir(dst)), shq(dst)))
		case underRun(dst):
			lines = append(lines, "mkdir -p "+shq(dst))
		default:
			if err := k.hostMountPoint(dst, file); err != nil {
				return "", err
			}
		}
		lines = append(lines, fmt.Sprintf("mount --bind %s %s", shq(src), shq(dst)))
		if m.ReadOnly {
			lines = append(lines, fmt.Sprintf("mount -o remount,bind,ro %s", shq(dst)))
		}
	}
	if ctr.WorkingDir != "" {
		lines = append(lines, "cd "+shq(ctr.WorkingDir))
	} else {
		lines = append(lines, "cd /")
	}
	lines = append(lines, `exec "$@"`)
	return strings.Join(lines, "\n"), nil
}

// runAs is the setpriv prefix that runs the container as the user and
// group its security context names (container over pod), with the pod's
// fsGroup as a supplementary group, and no new privileges; nil for root.
func runAs(pod *corev1.PodSecurityContext, ctr *corev1.SecurityContext) []string {
	var uid, gid, fsGroup *int64
	if pod != nil {
		uid, gid, fsGroup = pod.RunAsUser, pod.RunAsGroup, pod.FSGroup
	}
	if ctr != nil {
		if ctr.RunAsUser != nil {
			uid = ctr.RunAsUser
		}
		if ctr.RunAsGroup != nil {
			gid = ctr.RunAsGroup
		}
	}
	if uid == nil || *uid == 0 {
		return nil
	}
	g := *uid
	if gid != nil {
		g = *gid
	}
	args := []string{"setpriv", "--reuid=" + strconv.FormatInt(*uid, 10), "--regid=" + strconv.FormatInt(g, 10)}
	if fsGroup != nil {
		args = append(args, "--groups="+strconv.FormatInt(*fsGroup, 10))
	} else {
		args = append(args, "--clear-groups")
	}
	return append(args, "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all")
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// process is a running container (or gateway) process.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when it has exited
	code    int           // exit status, once done
}

type signalKind int

const (
	sigterm signalKind = iota
	sigkill
)

// startProcess starts cmd in a process group of its own, killed with the
// test process, its output appended to logPath.
func startProcess(cmd *exec.Cmd, env []string, logPath string) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	fmt.Fprintf(log, "---- %s start\n", time.Now().Format(time.RFC3339Nano))
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	return p, nil
}

// stop signals the process group and waits for the process to exit;
// SIGTERM turns into SIGKILL after 30s.
func (p *process) stop(ctx context.Context, sig signalKind) {
	s := syscall.SIGTERM
	if sig == sigkill {
		s = syscall.SIGKILL
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, s) // it may have exited already
	select {
	case <-p.done:
		return
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail is the end of the process's log since its last start.
func (p *process) tail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	s := string(b)
	if i := strings.LastIndex(s, "---- "); i >= 0 {
		if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
			s = s[i+j+1:]
		}
	}
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)[:n]
}
