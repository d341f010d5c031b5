//go:build unix

package procs

import (
	"runtime"
	"syscall"
	"time"
)

// Go returns the real runtime: GOMAXPROCS and getrusage(RUSAGE_SELF).
func Go() Runtime { return goRuntime{} }

type goRuntime struct{}

func (goRuntime) One() { runtime.GOMAXPROCS(1) }

func (goRuntime) Default() int {
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}

func (goRuntime) CPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
