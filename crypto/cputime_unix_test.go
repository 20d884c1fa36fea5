//go:build unix

package crypto

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of this process. Benchmarks
// report it per operation as cpu-ns/op: on a shared machine wall time also
// counts the time spent waiting for a core, CPU time does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
