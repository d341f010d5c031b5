package wan

import (
	"fmt"
	"sync/atomic"
)

// Stats counts one direction's packets.
type Stats struct {
	Packets   int64 `json:"packets"`    // read from the input device
	Bytes     int64 `json:"bytes"`      // their bytes
	Sent      int64 `json:"sent"`       // written to the output device
	Lost      int64 `json:"lost"`       // dropped by the configured loss
	TailDrops int64 `json:"tail_drops"` // dropped at the tail of a full queue
	NoBuffer  int64 `json:"no_buffer"`  // dropped for want of a packet buffer (the emulator's own limit)
	Late      int64 `json:"late"`       // written more than 1 ms after they were due (the emulator's own lag)
	MaxQueue  int64 `json:"max_queue"`  // largest queue in bytes in front of the bottleneck
}

// String formats s for a report.
func (s Stats) String() string {
	return fmt.Sprintf("%d packets (%d MB), %d lost (%.2f%%), %d tail drops, %d dropped for want of buffers, %d written >1 ms late, max queue %d KB",
		s.Packets, s.Bytes/1e6, s.Lost, pct(s.Lost, s.Packets), s.TailDrops, s.NoBuffer, s.Late, s.MaxQueue/1000)
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// stats is Stats updated by the forwarder's goroutines.
type stats struct {
	packets, bytes, sent, lost, tailDrops, noBuffer, late atomic.Int64
	maxQueue                                              maxInt
}

func (s *stats) snapshot() Stats {
	return Stats{Packets: s.packets.Load(), Bytes: s.bytes.Load(), Sent: s.sent.Load(), Lost: s.lost.Load(),
		TailDrops: s.tailDrops.Load(), NoBuffer: s.noBuffer.Load(), Late: s.late.Load(), MaxQueue: s.maxQueue.Load()}
}

func (s *stats) reset() {
	for _, c := range []*atomic.Int64{&s.packets, &s.bytes, &s.sent, &s.lost, &s.tailDrops, &s.noBuffer, &s.late, &s.maxQueue.Int64} {
		c.Store(0)
	}
}

// maxInt is an atomic running maximum.
type maxInt struct{ atomic.Int64 }

func (m *maxInt) raise(v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}
