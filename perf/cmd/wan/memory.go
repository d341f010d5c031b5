package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/ewgw/ewgw/perf/internal/bench"
	"github.com/ewgw/ewgw/perf/wan"
)

// memory is one path's resident memory before and after many idle
// connections were opened through it, per process.
type memory struct {
	Path   string   `json:"path"`
	Conns  int      `json:"conns"`
	Procs  []string `json:"procs"`
	Before []int64  `json:"before"` // bytes of VmRSS
	After  []int64  `json:"after"`
	Err    string   `json:"error,omitempty"`
}

// perConn returns process i's added memory per connection in KiB.
func (m memory) perConn(i int) float64 {
	return float64(m.After[i]-m.Before[i]) / 1024 / float64(m.Conns)
}

// chainConns caps the idle connections through HAProxy and nginx: each
// holds two descriptors per connection in one process, and a process may
// have 20,000 on the bench machine.
const chainConns = 7000

// measureMemory opens o.memConns idle TLS connections through each proxied
// path in turn (fresh processes: nothing else ran through them yet) and
// reads the processes' VmRSS before and after.
func measureMemory(o options, ctl *wan.Client, paths []*path, client *tls.Config) ([]memory, error) {
	if err := ctl.Set(wan.Config{Delay: o.memRTT / 2}); err != nil {
		return nil, err
	}
	var out []memory
	for _, p := range paths {
		if len(p.procs) == 0 {
			continue
		}
		m := memory{Path: p.name, Conns: o.memConns}
		if _, gw := ewgwPaths[p.name]; !gw {
			m.Conns = min(m.Conns, chainConns)
		}
		fmt.Fprintf(os.Stderr, "memory: %d idle connections through %s\n", m.Conns, p.name)
		for _, q := range p.procs {
			m.Procs = append(m.Procs, q.name)
			m.Before = append(m.Before, bench.RSS(q.pid()))
		}
		conns, err := bench.OpenIdle(p.addr, client, m.Conns, 64)
		if err != nil {
			m.Err = err.Error()
			out = append(out, m)
			continue
		}
		// Let the gateways settle (buffers released after the handshakes).
		time.Sleep(3 * time.Second)
		for _, q := range p.procs {
			m.After = append(m.After, bench.RSS(q.pid()))
		}
		bench.CloseAll(conns)
		out = append(out, m)
		time.Sleep(2 * time.Second)
	}
	return out, nil
}
