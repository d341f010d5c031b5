package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// CPU returns the user+system CPU seconds of process pid and its direct
// children (nginx workers).
func CPU(pid int) float64 { return family(pid, procCPU) }

// RSS returns the resident set size in bytes (VmRSS from /proc/PID/status)
// of process pid and its direct children (nginx workers), like CPU.
func RSS(pid int) int64 { return family(pid, procRSS) }

// family sums of over process pid and its direct children.
func family[T int64 | float64](pid int, of func(pid string) T) T {
	total := of(strconv.Itoa(pid))
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if ppid(e.Name()) == pid {
			total += of(e.Name())
		}
	}
	return total
}

// procRSS returns one process's VmRSS in bytes, or 0.
func procRSS(pid string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid string) []string {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// ppid returns the parent pid from /proc/PID/stat, or -1.
func ppid(pid string) int {
	f := statFields(pid)
	if len(f) < 2 {
		return -1
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// procCPU returns utime+stime in seconds (clock ticks of 1/100 s, Linux's
// USER_HZ).
func procCPU(pid string) float64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// WaitQuiet samples the machine's CPU use for a second and waits until it
// is at most maxBusy, so other people's work on a shared machine does not
// land in a measurement. The CPU time of the processes own (and their
// children) does not count: they are the ones about to be measured. It waits
// up to ten minutes, then measures anyway; it returns the last busy
// fraction, which the reports show.
func WaitQuiet(maxBusy float64, own ...int) float64 {
	return WaitQuietFor(maxBusy, 10*time.Minute, own...)
}

// WaitQuietFor is WaitQuiet waiting up to about limit.
func WaitQuietFor(maxBusy float64, limit time.Duration, own ...int) float64 {
	var busy float64
	for range max(1, int(limit/(2*time.Second))) {
		busy = cpuBusy(time.Second, own)
		if busy <= maxBusy {
			return busy
		}
		fmt.Fprintf(os.Stderr, "machine busy (%.0f%% CPU), waiting\n", busy*100)
		time.Sleep(time.Second)
	}
	fmt.Fprintf(os.Stderr, "machine still busy (%.0f%% CPU), measuring anyway\n", busy*100)
	return busy
}

// cpuBusy returns the fraction of all CPUs that were not idle during d,
// less what the processes own used.
func cpuBusy(d time.Duration, own []int) float64 {
	ownCPU := func() (s float64) {
		for _, pid := range own {
			s += CPU(pid)
		}
		return s
	}
	own0 := ownCPU()
	idle0, irq0, total0 := cpuTimes()
	time.Sleep(d)
	idle1, irq1, total1 := cpuTimes()
	own1 := ownCPU()
	if total1 <= total0 {
		return 0
	}
	// /proc/stat counts USER_HZ (1/100 s) ticks summed over CPUs.
	busy := (total1 - total0) - (idle1 - idle0) - (own1-own0)*100
	if len(own) > 0 {
		// The own processes' loopback packets are processed in softirq
		// context, which /proc/PID/stat does not charge to them.
		busy -= irq1 - irq0
	}
	return max(0, busy/(total1-total0))
}

// MachineCPU returns the CPU seconds all CPUs have spent busy since boot
// (everything but idle and iowait, interrupts included), from /proc/stat.
// Its difference across a test is what the whole test cost the machine:
// client, server and proxy, with the loopback packet processing that
// /proc/PID/stat charges to no one.
func MachineCPU() float64 {
	idle, _, total := cpuTimes()
	return (total - idle) / 100 // USER_HZ ticks
}

// cpuTimes returns idle (idle+iowait), interrupt (irq+softirq) and total
// jiffies from /proc/stat.
func cpuTimes() (idle, irq, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		switch i {
		case 3, 4:
			idle += v
		case 5, 6:
			irq += v
		}
	}
	return idle, irq, total
}

// FetchProfile writes a CPU profile of d from the pprof endpoint at admin
// into file.
func FetchProfile(admin string, d time.Duration, file string) error {
	return fetchPprof(admin, "profile", d, file)
}

// FetchTrace writes an execution trace of d from the pprof endpoint at
// admin into file (read it with go tool trace).
func FetchTrace(admin string, d time.Duration, file string) error {
	return fetchPprof(admin, "trace", d, file)
}

func fetchPprof(admin, kind string, d time.Duration, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", admin, kind, int(d.Seconds()))
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Machine describes the host for the reports.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("machine: %d CPUs, %s, %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
