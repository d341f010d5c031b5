package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one round's results for one path. CPU fields are the proxy
// process's (and its children's) user+system seconds during that test.
type sample struct {
	down, up, rate          float64 // Gbit/s, Gbit/s, connections/s
	rttP50, rttP99          time.Duration
	ttfbP50, ttfbP99        time.Duration
	cpuDown, cpuUp, cpuRate float64
	cpuPerConn              float64 // cpuRate per connection made
	busy                    float64 // worst CPU fraction others used before a test
}

// measureAll runs every test on every path, o.rounds times, rotating the
// path order each round, and returns the samples by path name.
func measureAll(o options, paths []*path, client *tls.Config) (map[string][]sample, error) {
	res := map[string][]sample{}
	for r := range o.rounds {
		order := append(slices.Clone(paths[r%len(paths):]), paths[:r%len(paths)]...)
		for _, p := range order {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", r+1, p.name)
			s, err := measure(o, p, client)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			res[p.name] = append(res[p.name], s)
		}
	}
	return res, nil
}

// testNames lists the tests in the order they run.
var testNames = []string{"down", "up", "rate", "rtt", "ttfb"}

// measure runs each selected test once on p, each after the machine is
// quiet. Skipped tests leave their fields zero.
func measure(o options, p *path, client *tls.Config) (sample, error) {
	var s sample
	tests := map[string]func() error{
		"down": func() (err error) {
			s.cpuDown, err = p.cpuDuring(func() (err error) { s.down, err = bulk(p.addr, client, 0, o.bulkBytes); return })
			return err
		},
		"up": func() (err error) {
			s.cpuUp, err = p.cpuDuring(func() (err error) { s.up, err = bulk(p.addr, client, o.bulkBytes, 0); return })
			return err
		},
		"rate": func() (err error) {
			s.cpuRate, err = p.cpuDuring(func() (err error) { s.rate, err = connRate(p.addr, client, o.workers, o.rateFor); return })
			if s.rate > 0 {
				s.cpuPerConn = s.cpuRate / (s.rate * o.rateFor.Seconds())
			}
			return err
		},
		"rtt": func() error {
			rtt, err := warmRTT(p.addr, client, 64, 1000, o.rtts)
			if err == nil {
				s.rttP50, s.rttP99 = percentile(rtt, 0.5), percentile(rtt, 0.99)
			}
			return err
		},
		"ttfb": func() error {
			tt, err := ttfb(p.addr, client, o.ttfbs)
			if err == nil {
				s.ttfbP50, s.ttfbP99 = percentile(tt, 0.5), percentile(tt, 0.99)
			}
			return err
		},
	}
	for _, name := range testNames {
		if !slices.Contains(o.tests, name) {
			continue
		}
		s.busy = max(s.busy, waitQuiet(o.maxBusy))
		if err := tests[name](); err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s, nil
}

// cpuDuring returns the proxy CPU seconds that f took.
func (p *path) cpuDuring(f func() error) (float64, error) {
	before := p.cpu()
	err := f()
	return p.cpu() - before, err
}

// cpu returns the user+system CPU seconds of p's process and its direct
// children (nginx workers); 0 for the direct path.
func (p *path) cpu() float64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	pid := p.cmd.Process.Pid
	total := procCPU(strconv.Itoa(pid))
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if ppid(e.Name()) == pid {
			total += procCPU(e.Name())
		}
	}
	return total
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

// waitQuiet samples the machine's CPU use for a second and waits (up to a
// minute) until it is at most maxBusy, so other people's work on a shared
// machine does not land in a measurement. It waits up to ten minutes, then
// measures anyway; it returns the last busy fraction, which the report shows.
func waitQuiet(maxBusy float64) float64 {
	var busy float64
	for range 300 {
		busy = cpuBusy(time.Second)
		if busy <= maxBusy {
			return busy
		}
		fmt.Fprintf(os.Stderr, "machine busy (%.0f%% CPU), waiting\n", busy*100)
		time.Sleep(time.Second)
	}
	fmt.Fprintf(os.Stderr, "machine still busy (%.0f%% CPU), measuring anyway\n", busy*100)
	return busy
}

// cpuBusy returns the fraction of all CPUs that were not idle during d.
func cpuBusy(d time.Duration) float64 {
	idle0, total0 := cpuTimes()
	time.Sleep(d)
	idle1, total1 := cpuTimes()
	if total1 <= total0 {
		return 0
	}
	return 1 - (idle1-idle0)/(total1-total0)
}

// cpuTimes returns idle (idle+iowait) and total jiffies from /proc/stat.
func cpuTimes() (idle, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total
}

// profileEwgw records ewgw CPU profiles from its pprof endpoint while the
// connection-rate and bulk-download tests run, into o.profileDir.
func profileEwgw(o options, p *path, client *tls.Config) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	runs := []struct {
		name string
		load func() error
	}{
		{"connrate", func() error { _, err := connRate(p.addr, client, o.workers, time.Second); return err }},
		{"bulk-down", func() error { _, err := bulk(p.addr, client, 0, o.bulkBytes/4); return err }},
		{"bulk-up", func() error { _, err := bulk(p.addr, client, o.bulkBytes/4, 0); return err }},
	}
	for _, r := range runs {
		waitQuiet(o.maxBusy)
		file := filepath.Join(o.profileDir, "ewgw-"+r.name+".pprof")
		done := make(chan error, 1)
		go func() { done <- fetchProfile(p.admin, o.profileFor, file) }()
		deadline := time.Now().Add(o.profileFor)
		for time.Now().Before(deadline) {
			if err := r.load(); err != nil {
				return fmt.Errorf("profile %s: %w", r.name, err)
			}
		}
		if err := <-done; err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", file)
	}
	return nil
}

func fetchProfile(admin string, d time.Duration, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds()))
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
