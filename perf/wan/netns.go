package wan

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Names and addresses of the emulated topology. 198.18.0.0/15 is the
// benchmarking range (RFC 2544 §C.2.2), reachable here only inside the two
// namespaces.
const (
	NamespaceA = "ewgw-wan-a"  // client side
	NamespaceB = "ewgw-wan-b"  // server side
	AddrA      = "198.18.0.1"  // NamespaceA's end of the link
	AddrB      = "198.18.0.2"  // NamespaceB's end of the link
	Device     = "wan0"        // the TUN device in each namespace
	prefix     = "/30"         // both ends on one subnet, nothing else routed
	netnsDir   = "/run/netns/" // where "ip netns add" mounts namespaces
)

// Sysctls set in both namespaces. New namespaces start from the kernel's
// defaults, not the host's: TCP buffers big enough for 80 ms at 1 Gbit/s
// (10 MB), and CUBIC, Linux's default congestion control, whatever the
// host runs.
func sysctls(cc string) map[string]string {
	return map[string]string{
		"net.ipv4.tcp_congestion_control": cc,
		"net.ipv4.tcp_rmem":               "4096 131072 33554432",
		"net.ipv4.tcp_wmem":               "4096 16384 33554432",
		"net.ipv4.tcp_no_metrics_save":    "1",
		"net.ipv4.ping_group_range":       "0 2147483647",
	}
}

// Topology is the two namespaces and their TUN devices.
type Topology struct {
	A, B    int    // TUN file descriptors, non-blocking
	restore func() // undoes allowCongestionControl
}

// Setup removes leftovers of an earlier run, creates NamespaceA and
// NamespaceB with a TUN device each, addresses them, sets sysctls (cc is the
// TCP congestion control) and returns the devices' descriptors. The devices
// vanish when the descriptors close; Teardown removes the namespaces.
func Setup(cc string) (*Topology, error) {
	Teardown()
	t := &Topology{A: -1, B: -1}
	restore, err := allowCongestionControl(cc)
	if err != nil {
		return nil, err
	}
	t.restore = restore
	for _, end := range []struct {
		ns, addr string
		fd       *int
	}{{NamespaceA, AddrA, &t.A}, {NamespaceB, AddrB, &t.B}} {
		if err := ip("netns", "add", end.ns); err != nil {
			t.Close()
			return nil, err
		}
		fd, err := openTUN(end.ns, Device)
		if err != nil {
			t.Close()
			return nil, err
		}
		*end.fd = fd
		if err := setSysctls(end.ns, sysctls(cc)); err != nil {
			t.Close()
			return nil, err
		}
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"addr", "add", end.addr + prefix, "dev", Device},
			{"link", "set", Device, "mtu", fmt.Sprint(MTU), "txqueuelen", "1000", "up"},
		} {
			if err := ip(append([]string{"-n", end.ns}, args...)...); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	return t, nil
}

// Close closes the TUN devices and restores the host's list of allowed
// congestion controls.
func (t *Topology) Close() {
	if t.restore != nil {
		t.restore()
	}
	for _, fd := range []int{t.A, t.B} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

// Teardown deletes both namespaces, ignoring ones that do not exist.
func Teardown() {
	for _, ns := range []string{NamespaceA, NamespaceB} {
		if _, err := os.Stat(netnsDir + ns); err == nil {
			_ = ip("netns", "del", ns)
		}
	}
}

// Command returns cmd run in namespace ns (through "ip netns exec"), or as
// it is when ns is empty.
func Command(ns, name string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// allowedCC is the host-wide list of congestion controls that namespaces
// other than the first may choose.
const allowedCC = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"

// allowCongestionControl adds cc to allowedCC if it is missing (only the
// initial namespace may otherwise pick it) and returns what puts the list
// back.
func allowCongestionControl(cc string) (restore func(), err error) {
	b, err := os.ReadFile(allowedCC)
	if err != nil {
		return nil, err
	}
	old := strings.TrimSpace(string(b))
	if slices.Contains(strings.Fields(old), cc) {
		return func() {}, nil
	}
	if err := os.WriteFile(allowedCC, []byte(old+" "+cc), 0); err != nil {
		return nil, fmt.Errorf("allow congestion control %s: %w", cc, err)
	}
	return func() { _ = os.WriteFile(allowedCC, []byte(old), 0) }, nil
}

// setSysctls sets kv in namespace ns (sysctl(8), run there).
func setSysctls(ns string, kv map[string]string) error {
	args := []string{"-q", "-w"}
	for k, v := range kv {
		args = append(args, k+"="+v)
	}
	if out, err := Command(ns, "sysctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("sysctl in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// openTUN creates TUN device name in namespace ns. A device belongs to the namespace of the thread that creates it,
// so this runs on a locked thread that joins ns and is never reused: the
// goroutine exits still locked, and the runtime ends the thread.
func openTUN(ns, name string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := openTUNHere(ns, name)
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

func openTUNHere(ns, name string) (int, error) {
	nsfd, err := unix.Open(netnsDir+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer func() { _ = unix.Close(nsfd) }()
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("setns %s: %w", ns, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s in %s: %w", name, ns, err)
	}
	return fd, nil
}
