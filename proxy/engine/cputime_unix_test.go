//go:build unix

package engine

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of this process: benchmarks
// report it per row, which a busy machine does not inflate as it does wall
// time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
