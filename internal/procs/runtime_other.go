//go:build !unix

package procs

import (
	"errors"
	"time"
)

// Go returns a runtime that cannot read the process's CPU time here, so the
// governor leaves the runtime default alone.
func Go() Runtime { return otherRuntime{} }

type otherRuntime struct{}

func (otherRuntime) One()                    {}
func (otherRuntime) Default() int            { return 1 }
func (otherRuntime) Runnable() time.Duration { return 0 }
func (otherRuntime) CPU() (time.Duration, error) {
	return 0, errors.New("process CPU time is not read on this OS")
}
