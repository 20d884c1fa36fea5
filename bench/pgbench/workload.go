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
	Name    string `json:"name"`
	Kind    string `json:"kind"`              // its targetKind
	Variant string `json:"variant,omitempty"` // of pgcloak: the suffix without its dash
	Port    int    `json:"port"`
	PID     int    `json:"pid,omitempty"` // the process whose CPU time is measured
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

// measurement is the result of one pgbench run.
type measurement struct {
	tps       float64
	cpuPerTxn float64 // µs of the target process's CPU per transaction (0: not measured)
}

// measure runs w against t for secs seconds and returns the TPS that pgbench
// reports and the CPU time t's process spent per transaction.
func measure(ctx context.Context, o options, t target, w workload, secs int) (measurement, error) {
	args := append([]string{"-n", "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(o.jobs), "-T", strconv.Itoa(secs)}, w.Args...)
	cpu, err := startCPU(t.PID)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", t.Name, err)
	}
	out, err := pgbench(ctx, t.Port, args...)
	if err != nil {
		return measurement{}, fmt.Errorf("%s against %s: pgbench %s: %w\n%s", w.Name, t.Name, strings.Join(args, " "), err, out)
	}
	used, err := cpu.used()
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", t.Name, err)
	}
	var m measurement
	if m.tps, err = parseTPS(out); err != nil {
		return m, fmt.Errorf("%s against %s: %w\n%s", w.Name, t.Name, err, out)
	}
	txns, err := parseTxns(out)
	if err != nil || txns == 0 {
		return m, fmt.Errorf("%s against %s: no transactions counted (%v)\n%s", w.Name, t.Name, err, out)
	}
	m.cpuPerTxn = float64(used.Nanoseconds()) / 1e3 / float64(txns)
	return m, nil
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
