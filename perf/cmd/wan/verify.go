package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
	"github.com/ewgw/ewgw/perf/wan"
)

// sourcePort is where the source role serves in NamespaceB.
const sourcePort = "5201"

// serveSource writes zeros to every connection accepted on addr until the
// peer closes it: the far end of the emulator's TCP checks.
func serveSource(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// tcpDownload reads from the source at addr for d and returns the goodput
// in Mbit/s, from the first byte to the last, on n connections at once.
func tcpDownload(addr string, n int, d time.Duration) (float64, error) {
	type res struct {
		bytes       int64
		first, last time.Time
		err         error
	}
	results := make(chan res, n)
	for range n {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				results <- res{err: err}
				return
			}
			defer c.Close()
			r := res{}
			buf := make([]byte, 256<<10)
			c.SetReadDeadline(time.Now().Add(d))
			for {
				k, err := c.Read(buf)
				if k > 0 {
					if r.bytes == 0 {
						r.first = time.Now()
					}
					r.bytes += int64(k)
					r.last = time.Now()
				}
				if err != nil {
					break
				}
			}
			results <- r
		}()
	}
	var total int64
	var first, last time.Time
	for range n {
		r := <-results
		if r.err != nil {
			return 0, r.err
		}
		total += r.bytes
		if first.IsZero() || r.first.Before(first) {
			first = r.first
		}
		if r.last.After(last) {
			last = r.last
		}
	}
	return float64(total) * 8 / last.Sub(first).Seconds() / 1e6, nil
}

// verify checks the emulator from NamespaceA and prints a markdown report:
// its own capacity, round-trip times and jitter with ping, loss over many
// pings, and TCP goodput against the configured rate.
func verify(o options) error {
	ctl := wan.NewClient(o.ctl)
	src, err := startInB(o, "source", "-listen", wan.AddrB+":"+sourcePort)
	if err != nil {
		return err
	}
	defer bench.Stop(src, 2*time.Second)
	w := os.Stdout
	fmt.Fprintf(w, "%s\n\n", bench.Machine())
	if err := waitTCP(wan.AddrB+":"+sourcePort, 10*time.Second); err != nil {
		return err
	}
	if err := verifyCapacity(w, ctl); err != nil {
		return err
	}
	if err := verifyPing(w, ctl, o); err != nil {
		return err
	}
	return verifyRate(w, ctl, o)
}

// verifyCapacity measures what the emulator itself carries: TCP across it
// with no delay and no rate limit, one and eight connections.
func verifyCapacity(w io.Writer, ctl *wan.Client) error {
	fmt.Fprintln(w, "Emulator capacity: TCP goodput across the link with no delay, no loss and no rate limit, 5 s each, with the forwarder's CPU use and counters.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | connections | goodput | forwarder CPU | forwarder counters, data direction (B→A) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, cfg := range []wan.Config{{}, {Delay: 10 * time.Millisecond}} {
		for _, n := range []int{1, 8} {
			mbit, rep, err := tcpThrough(ctl, cfg, n, 5*time.Second)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "| RTT %s, unlimited | %d | %.0f Mbit/s | %.0f %% of a core | %s |\n", 2*cfg.Delay, n, mbit,
				100*rep.CPU/5, rep.BA)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// verifyPing pings across the link at each configured RTT, with jitter,
// and with loss over enough packets to see 1 %.
func verifyPing(w io.Writer, ctl *wan.Client, o options) error {
	type check struct {
		cfg      wan.Config
		count    int
		interval time.Duration
	}
	var checks []check
	for _, rtt := range o.rtts {
		checks = append(checks, check{wan.Config{Delay: rtt / 2}, 20, 50 * time.Millisecond})
	}
	checks = append(checks,
		check{wan.Config{Delay: 10 * time.Millisecond, Jitter: 4 * time.Millisecond}, 200, 10 * time.Millisecond},
		check{wan.Config{Delay: 10 * time.Millisecond, Loss: 0.01}, 5000, 2 * time.Millisecond},
		check{wan.Config{Delay: 40 * time.Millisecond, Loss: 0.01, Rate: o.rate}, 5000, 2 * time.Millisecond},
	)
	fmt.Fprintln(w, "ping from ewgw-wan-a to ewgw-wan-b (ICMP echo, 56 data bytes). A loss of p per direction loses 1-(1-p)² of round trips (1.99 % for 1 %).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | pings | result | emulator: lost A→B / B→A |")
	fmt.Fprintln(w, "|---|---:|---|---|")
	for _, c := range checks {
		if err := ctl.Set(c.cfg); err != nil {
			return err
		}
		r, err := wan.Ping(wan.AddrB, c.count, c.interval, 2*time.Second+4*c.cfg.Delay)
		if err != nil {
			return err
		}
		rep, err := ctl.Report()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| %s | %d every %s | %s | %d / %d of %d / %d |\n", c.cfg, c.count, c.interval, r,
			rep.AB.Lost, rep.BA.Lost, rep.AB.Packets, rep.BA.Packets)
	}
	fmt.Fprintln(w)
	return nil
}

// verifyRate checks TCP goodput against the configured rate at each RTT.
func verifyRate(w io.Writer, ctl *wan.Client, o options) error {
	fmt.Fprintf(w, "TCP goodput (%s) across the link limited to %g Mbit/s, 8 s, one and eight connections. "+
		"TCP/IP headers take 52 of every 1500 bytes, so goodput tops out at 96.5 %% of the rate.\n\n", o.cc, o.rate/1e6)
	fmt.Fprintln(w, "| link | connections | goodput | of the rate | forwarder CPU | emulator counters, data direction |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
	for _, rtt := range o.rtts {
		for _, n := range []int{1, 8} {
			cfg := wan.Config{Delay: rtt / 2, Rate: o.rate}
			mbit, rep, err := tcpThrough(ctl, cfg, n, 8*time.Second)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "| %s | %d | %.0f Mbit/s | %.1f %% | %.0f %% of a core | %s |\n", cfg, n, mbit,
				100*mbit*1e6/o.rate, 100*rep.CPU/8, rep.BA)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// tcpThrough shapes the link as cfg, downloads from the source on n
// connections for d, and returns the goodput in Mbit/s and the emulator's
// report over the download (its CPU seconds in CPU).
func tcpThrough(ctl *wan.Client, cfg wan.Config, n int, d time.Duration) (float64, wan.Report, error) {
	if err := ctl.Set(cfg); err != nil {
		return 0, wan.Report{}, err
	}
	r0, err := ctl.Report()
	if err != nil {
		return 0, wan.Report{}, err
	}
	mbit, err := tcpDownload(wan.AddrB+":"+sourcePort, n, d)
	if err != nil {
		return 0, wan.Report{}, err
	}
	r1, err := ctl.Report()
	r1.CPU -= r0.CPU
	return mbit, r1, err
}

// waitTCP waits up to d for something to listen on addr.
func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInB starts this program in NamespaceB with role and args; it dies
// with this process.
func startInB(o options, role string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := wan.Command(wan.NamespaceB, self, append([]string{"-role=" + role}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = bench.OrphanKill()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", role, wan.NamespaceB, err)
	}
	return cmd, nil
}
