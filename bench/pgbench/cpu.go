package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CPU time per transaction is the figure of a proxy that does not depend on
// free cores: on a 2-core machine pgbench, PostgreSQL and the proxy share the
// CPUs, so a proxy's TPS mostly measures the contention, while the CPU it
// spends per transaction is what it would take from a real host. It is read
// from /proc/PID/stat (utime + stime, all threads of the process, in clock
// ticks) before and after each pgbench run and divided by the transactions
// pgbench reports.

// clockTick is the unit of /proc/PID/stat's times (sysconf(_SC_CLK_TCK),
// 100 Hz on every Linux build we know).
var clockTick = sync.OnceValue(func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond
})

// procCPU returns the user+system CPU time process pid has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatTicks(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ticks) * clockTick(), nil
}

// parseStatTicks returns utime+stime (fields 14 and 15, clock ticks) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func parseStatTicks(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q are not numbers", f[11], f[12])
	}
	return utime + stime, nil
}

// txnLine matches pgbench's count of transactions.
var txnLine = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)

// parseTxns returns the number of transactions pgbench processed.
func parseTxns(out string) (int64, error) {
	m := txnLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no transaction count in pgbench output")
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// cpuMeter reads the CPU time of a target's process around a run.
type cpuMeter struct {
	pid   int
	start time.Duration
}

// startCPU starts measuring pid (0: nothing to measure).
func startCPU(pid int) (cpuMeter, error) {
	if pid == 0 {
		return cpuMeter{}, nil
	}
	t, err := procCPU(pid)
	return cpuMeter{pid: pid, start: t}, err
}

// used returns the CPU time since startCPU (0 when nothing is measured).
func (m cpuMeter) used() (time.Duration, error) {
	if m.pid == 0 {
		return 0, nil
	}
	t, err := procCPU(m.pid)
	return t - m.start, err
}

// startPerf starts perf record on t's process (when dir is set and t has
// one) and returns the function that stops it and waits for its file.
func startPerf(ctx context.Context, dir string, t target, name string) (stop func(), err error) {
	if dir == "" || t.PID == 0 {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(name)+".data")
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(t.PID), "-o", out)
	cmd.SysProcAttr = childAttr(nil)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}, nil
}
