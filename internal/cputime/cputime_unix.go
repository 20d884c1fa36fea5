//go:build unix

// Package cputime reads the CPU time of this process, which benchmarks
// report per operation (cpu-ns/op): on a shared machine wall time also
// counts the time spent waiting for a core, CPU time does not.
package cputime

import (
	"syscall"
	"time"
)

// Self returns the user+system CPU time of this process, all threads, so
// far (0 if it cannot be read).
func Self() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
