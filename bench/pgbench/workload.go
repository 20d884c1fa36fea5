package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// pgbench connects as the superuser (trust on loopback, in PostgreSQL and in
// PgBouncer) to the harness's application database.
const (
	benchUser = harness.SuperUser
	benchDB   = harness.AppDB
)

// target is a server that pgbench can connect to on 127.0.0.1.
type target struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	// pid is the proxy process whose CPU time is measured (0: none).
	pid int
}

// workload is one line of the result table: the pgbench arguments that say
// what to run. The arguments common to every run (-n -c -j -T and the
// connection) are added by measure.
type workload struct {
	Name string
	Args []string
}

// makeWorkloads returns one workload per mode, each running the built-in
// select-only script, or one per script and mode when -script is given.
func makeWorkloads(o options) []workload {
	var ws []workload
	if len(o.scripts) == 0 {
		for _, m := range o.modes {
			ws = append(ws, workload{Name: m, Args: []string{"-S", "-M", m}})
		}
		return ws
	}
	for _, s := range o.scripts {
		for _, m := range o.modes {
			ws = append(ws, workload{Name: filepath.Base(s) + ":" + m, Args: []string{"-f", s, "-M", m}})
		}
	}
	return ws
}

// measure runs w against t for secs seconds and returns the TPS that pgbench
// reports.
func measure(ctx context.Context, o options, t target, w workload, secs int) (float64, error) {
	tps, _, err := measureCPU(ctx, o, t, w, secs)
	return tps, err
}

// measureCPU is measure that also returns the CPU time (user and system)
// the target's proxy process spent per transaction, in microseconds (0
// without a process): on a machine where pgbench, PostgreSQL and the proxy
// share the cores, the proxy's cost per transaction carries over to other
// hosts better than its throughput.
func measureCPU(ctx context.Context, o options, t target, w workload, secs int) (float64, float64, error) {
	cpu0 := processCPU(t.pid)
	args := append([]string{"-n", "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(o.jobs), "-T", strconv.Itoa(secs)}, w.Args...)
	out, err := pgbench(ctx, t.Port, args...)
	cpu := processCPU(t.pid) - cpu0
	if err != nil {
		return 0, 0, fmt.Errorf("%s against %s: pgbench %s: %w\n%s", w.Name, t.Name, strings.Join(args, " "), err, out)
	}
	tps, err := parseTPS(out)
	if err != nil {
		return 0, 0, fmt.Errorf("%s against %s: %w\n%s", w.Name, t.Name, err, out)
	}
	var perTxn float64
	if m := txnLine.FindStringSubmatch(out); m != nil && t.pid != 0 {
		if n, _ := strconv.ParseFloat(m[1], 64); n > 0 {
			perTxn = cpu.Seconds() * 1e6 / n
		}
	}
	return tps, perTxn, nil
}

// txnLine matches pgbench's count of transactions.
var txnLine = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)

// processCPU is the user and system CPU time of process pid so far, from
// /proc/PID/stat (0 for pid 0, or when it cannot be read).
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): utime and stime are the 12th and 13th, in clock ticks.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ: sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// pgbench runs pgbench against benchDB on 127.0.0.1:port and returns its
// combined output. Variables of the caller's environment that libpq reads
// (PGHOST, PGSSLMODE, …) are dropped so that only the arguments count.
func pgbench(ctx context.Context, port int, args ...string) (string, error) {
	args = append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", benchUser, benchDB)
	cmd := exec.CommandContext(ctx, pgbenchPath(), args...)
	cmd.SysProcAttr = childAttr(nil)
	cmd.Env = append(cleanEnv(), "PGSSLMODE=disable", "PGAPPNAME=pgcloak-bench")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), ctx.Err()
	}
	return string(out), err
}

// pgbenchPath finds pgbench in PATH or next to the PostgreSQL server.
func pgbenchPath() string {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	if dir, err := harness.PostgresBinDir(); err == nil {
		return filepath.Join(dir, "pgbench")
	}
	return "pgbench"
}

// cleanEnv is this process's environment without libpq's variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// tpsLine matches pgbench's result line. PostgreSQL 14 and later print one,
// "tps = 41234.567890 (without initial connection time)"; older versions
// print "including connections establishing" and "excluding connections
// establishing", of which we want the second.
var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(([^)]*)\)`)

var errNoTPS = errors.New("no tps line in pgbench output")

// parseTPS returns the TPS from pgbench's output, without the time spent
// connecting.
func parseTPS(out string) (float64, error) {
	var tps string
	for _, m := range tpsLine.FindAllStringSubmatch(out, -1) {
		if tps == "" || !strings.HasPrefix(m[2], "including") {
			tps = m[1]
		}
	}
	if tps == "" {
		return 0, errNoTPS
	}
	return strconv.ParseFloat(tps, 64)
}
