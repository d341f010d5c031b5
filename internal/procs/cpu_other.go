//go:build !unix

package procs

import (
	"errors"
	"time"
)

// cpuTime is not read on this OS, so Run leaves the runtime default alone.
func cpuTime() (time.Duration, error) {
	return 0, errors.New("process CPU time is not read on this OS")
}
