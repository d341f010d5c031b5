package procs

import (
	"math"
	"runtime"
	"runtime/metrics"
	"time"
)

// Go returns the real runtime: GOMAXPROCS, the process's CPU time (see
// cpuTime) and the scheduler-latency histogram of runtime/metrics.
func Go() Runtime {
	return &goRuntime{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

type goRuntime struct {
	sample []metrics.Sample // reused; Run calls from one goroutine
}

func (*goRuntime) One() { runtime.GOMAXPROCS(1) }

func (*goRuntime) Default() int {
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}

func (*goRuntime) CPU() (time.Duration, error) { return cpuTime() }

// trackingPeriod: the runtime records the runnable time of one in this many
// goroutine transitions (gTrackingPeriod in runtime/proc.go), so the
// histogram's sum is that fraction of the total.
const trackingPeriod = 8

func (r *goRuntime) Runnable() time.Duration {
	metrics.Read(r.sample)
	if r.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	return trackingPeriod * histogramSum(r.sample[0].Value.Float64Histogram())
}

// histogramSum estimates the sum of a histogram's samples, in seconds, from
// bucket midpoints (the finite edge for an open-ended bucket).
func histogramSum(h *metrics.Float64Histogram) time.Duration {
	var sum float64
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		switch {
		case math.IsInf(lo, -1):
			lo = hi
		case math.IsInf(hi, 1):
			hi = lo
		}
		sum += float64(n) * (lo + hi) / 2
	}
	return time.Duration(sum * float64(time.Second))
}
