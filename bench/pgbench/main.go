// Command pgbench measures what a proxy costs: it runs pgbench against
// PostgreSQL directly, through PgBouncer and through pgcloak, in one run on
// one machine, and prints median TPS per target and the ratios between them.
//
//	go run ./bench/pgbench                                  # 5 rounds × 3 modes × 3 targets × 10 s ≈ 8 min
//	go run ./bench/pgbench -rounds 3 -duration 8 -markdown bench.md -json bench.json
//
// # What it does
//
// One run starts a throwaway PostgreSQL (integration/harness, fsync off,
// shared_buffers large enough for the data set), loads pgbench's tables
// (pgbench -i -s 10), starts PgBouncer in session mode and pgcloak built from
// this checkout (go build), each as a child process on 127.0.0.1, checks that
// every target answers a query, and warms each one up. Then, for every round,
// it runs every workload against every target back to back:
//
//	round 1: simple:   direct, pgbouncer, pgcloak
//	         extended: direct, pgbouncer, pgcloak
//	         prepared: direct, pgbouncer, pgcloak
//	round 2: …
//
// The default workloads are pgbench's built-in select-only script
// (pgbench -S -n -c 8 -j 2 -T 10) with the simple, extended and prepared
// query protocols (-M). Alternating the targets within a round spreads slow
// drifts of the machine (other processes, caches, frequency) evenly over
// them. Every child process is stopped and every temporary directory removed
// at exit, also on error and on Ctrl-C.
//
// # How to read it
//
// Select-only on a table that fits in memory is the worst case for a proxy:
// each transaction is one tiny query, so the proxy's cost per message (two
// more socket hops, their system calls and context switches) is all there is
// to see. "direct" is the physical limit; PgBouncer is the reference proxy.
// DESIGN.md §7 asks pgcloak for at least PgBouncer's TPS and at least 0.75×
// direct in every mode. The table holds medians over the rounds; the ratios
// are ratios of those medians. Each single run is printed as it finishes (and
// kept in -json): when runs of one target differ by more than a few percent,
// the machine was busy and the ratios are only as good as that spread.
//
// On a small machine the proxy competes with PostgreSQL and pgbench for CPU,
// so its throughput is bounded by the CPU it takes from them. pgcloak runs
// with GOMAXPROCS=1 (flag -gomaxprocs): on a 2-core host shared with
// PostgreSQL and pgbench, a single P means one thread runs Go code, and the
// scheduler has no idle Ps whose threads spin looking for work before they
// park, CPU that PostgreSQL would otherwise use. A relay that mostly waits in
// system calls needs no more, and PgBouncer, the reference, is
// single-threaded too.
//
// # Other workloads
//
// A target is a name and a port; a workload is a name and pgbench arguments.
// -script FILE (repeatable) replaces the select-only script by custom pgbench
// scripts (pgbench -f FILE), one workload per script and mode; -setup FILE
// runs SQL once after pgbench -i, to create what the scripts use. -targets
// and -modes choose a subset:
//
//	go run ./bench/pgbench -setup bench/sql/t.sql -script bench/sql/read.sql -modes prepared -targets direct,pgcloak
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// options are the command-line flags.
type options struct {
	rounds     int
	duration   seconds
	warmup     seconds
	clients    int
	jobs       int
	scale      int
	modes      []string
	targets    []string
	ratios     []string
	scripts    []string
	setup      string
	gomaxprocs []int        // of the pgcloak processes; 0: Go's default
	upstream   string       // how the proxies reach PostgreSQL: tcp or unix
	copyRows   int          // rows of the COPY measurement of pgcloak-enc (0: none)
	pgcloak    []binarySpec // the pgcloak binaries to compare
	jsonPath   string
	mdPath     string
	perfDir    string // record each proxy's runs with perf into this directory
	verbose    bool
}

// seconds is a flag holding whole seconds, as pgbench -T takes them: "8" or
// "8s".
type seconds int

func (s *seconds) String() string { return strconv.Itoa(int(*s)) }

func (s *seconds) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil || d%time.Second != 0 {
			return fmt.Errorf("want whole seconds, such as 10 or 10s")
		}
		n = int(d / time.Second)
	}
	if n < 0 {
		return fmt.Errorf("must not be negative")
	}
	*s = seconds(n)
	return nil
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags() options {
	o := options{duration: 10, warmup: 2}
	var modes, targets, ratios, procs string
	var scripts, binaries list
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every workload against every target")
	flag.Var(&o.duration, "duration", "`seconds` per pgbench run (pgbench -T)")
	flag.Var(&o.warmup, "warmup", "`seconds` of the first workload against each target before measuring (0: none)")
	flag.IntVar(&o.clients, "clients", 8, "pgbench clients (-c)")
	flag.IntVar(&o.jobs, "jobs", 2, "pgbench threads (-j)")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor (-i -s)")
	flag.StringVar(&modes, "modes", "simple,extended,prepared", "query protocols to measure (pgbench -M)")
	flag.StringVar(&targets, "targets", "direct,pgbouncer,pgcloak", "targets, in the order they alternate: "+strings.Join(targetNames(), ", ")+" (pgcloak-enc needs -setup bench/sql/encryption_setup.sql)")
	flag.StringVar(&ratios, "ratios", "pgcloak/direct,pgcloak/pgbouncer,pgbouncer/direct", "TPS ratios to report, A/B; those naming a target not in the run are left out")
	flag.Var(&scripts, "script", "pgbench script `FILE` to run instead of the select-only one (repeatable: one workload per script)")
	flag.StringVar(&o.setup, "setup", "", "SQL `FILE` run once after pgbench -i")
	flag.IntVar(&o.copyRows, "copy", 0, "with target pgcloak-enc: also time COPY FROM STDIN of this many rows into a plaintext and a protected table")
	flag.StringVar(&o.upstream, "upstream", "unix", "how PgBouncer and pgcloak reach PostgreSQL: unix (its socket, the usual co-located setup) or tcp (127.0.0.1)")
	flag.StringVar(&procs, "gomaxprocs", "1", "GOMAXPROCS of the pgcloak processes, comma-separated (0: Go's default, one per CPU): each value is a target of its own")
	flag.Var(&binaries, "pgcloak", "pgcloak to run, `[LABEL=]BINARY`: a path, . (go build this checkout, the default) or git:REF (build that commit); repeatable: each is a target of its own, and LAST/FIRST ratios are added")
	flag.StringVar(&o.jsonPath, "json", "", "write the results as JSON to `FILE`")
	flag.StringVar(&o.mdPath, "markdown", "", "write the results as a markdown table to `FILE`")
	flag.StringVar(&o.perfDir, "perf", "", "record every run of a proxy with `perf record -g` into DIR/TARGET-WORKLOAD-ROUND.data (perf report -i FILE)")
	flag.BoolVar(&o.verbose, "v", false, "log what the harness does")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/pgbench [flags]\n\n"+
			"Runs pgbench against PostgreSQL directly, through PgBouncer and through pgcloak,\n"+
			"alternating, and prints median TPS and ratios. See `go doc ./bench/pgbench`.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		usageError("unexpected arguments: %s", strings.Join(flag.Args(), " "))
	}
	o.modes, o.targets, o.ratios, o.scripts = split(modes), split(targets), split(ratios), scripts
	for _, p := range split(procs) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			usageError("-gomaxprocs: %q is not a number ≥ 0", p)
		}
		o.gomaxprocs = append(o.gomaxprocs, n)
	}
	if len(o.gomaxprocs) == 0 {
		usageError("-gomaxprocs must not be empty")
	}
	if len(binaries) == 0 {
		binaries = list{"."}
	}
	labels := map[string]bool{}
	for _, b := range binaries {
		spec, err := parseBinarySpec(b)
		if err != nil {
			usageError("%v", err)
		}
		if labels[spec.label] {
			usageError("-pgcloak: two binaries labelled %q: name them LABEL=BINARY", spec.label)
		}
		labels[spec.label] = true
		o.pgcloak = append(o.pgcloak, spec)
	}
	if o.rounds < 1 || o.duration < 1 || o.clients < 1 || o.jobs < 1 || o.scale < 1 {
		usageError("-rounds, -duration, -clients, -jobs and -scale must be at least 1")
	}
	if o.clients%o.jobs != 0 {
		usageError("-clients (%d) must be a multiple of -jobs (%d), as pgbench requires", o.clients, o.jobs)
	}
	for _, m := range o.modes {
		if m != "simple" && m != "extended" && m != "prepared" {
			usageError("-modes: unknown mode %q; known: simple, extended, prepared", m)
		}
	}
	if len(o.modes) == 0 || len(o.targets) == 0 {
		usageError("-modes and -targets must not be empty")
	}
	for _, t := range o.targets {
		if findTarget(t) == nil {
			usageError("-targets: unknown target %q; known: %s", t, strings.Join(targetNames(), ", "))
		}
	}
	for _, r := range o.ratios {
		if a, b, ok := strings.Cut(r, "/"); !ok || a == "" || b == "" {
			usageError("-ratios: %q is not A/B", r)
		}
	}
	for _, f := range append([]string{o.setup}, o.scripts...) {
		if _, err := os.Stat(f); f != "" && err != nil {
			usageError("%v", err)
		}
	}
	return o
}

func usageError(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

// split splits a comma-separated flag value, dropping empty items.
func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() { os.Exit(mainCode()) }

func mainCode() int {
	o := parseFlags()
	// Children run in their own process groups, so a Ctrl-C in the terminal
	// reaches only this process: it cancels ctx, which stops the running
	// pgbench, and the cleanups stop the servers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := newEnv(o.verbose)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer e.close()
	if err := run(ctx, o, e); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; stopping servers")
			return 130
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// run starts the servers, measures and reports. Harness failures arrive as
// a fatal panic from e.Fatalf and are returned as errors.
func run(ctx context.Context, o options, e *env) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	rep := &report{
		Started:    time.Now().UTC().Truncate(time.Second),
		CPUs:       runtime.NumCPU(),
		LoadBefore: loadavg(),
		Rounds:     o.rounds,
		Duration:   int(o.duration),
		Clients:    o.clients,
		Jobs:       o.jobs,
		Scale:      o.scale,
		Versions:   map[string]string{},
	}
	if busy(rep.LoadBefore, rep.CPUs) {
		logf("warning: load average %s on %d CPUs: other processes compete for CPU, the figures will be noisy", rep.LoadBefore, rep.CPUs)
	}
	targets, variants, directPort, err := startTargets(ctx, o, e, rep.Versions)
	if err != nil {
		return err
	}
	for _, v := range variants {
		rep.Variants = append(rep.Variants, variantInfo{Suffix: v.suffix, Label: v.label, Version: v.version, GOMAXPROCS: v.procs})
	}
	workloads := makeWorkloads(o)
	if o.warmup > 0 {
		logf("warming up: %s for %ds against each target", workloads[0].Name, o.warmup)
		for _, t := range targets {
			if _, err := measure(ctx, o, t, workloads[0], int(o.warmup)); err != nil {
				return err
			}
		}
	}
	var cipher *cipherCost
	if slices.ContainsFunc(targets, func(t target) bool { return t.Kind == "pgcloak-enc" }) {
		cipher = &cipherCost{}
	}
	results, err := measureRounds(ctx, o, targets, workloads, cipher)
	if err != nil {
		return err
	}
	rep.Cipher = cipher
	if o.copyRows > 0 && cipher != nil {
		logf("COPY FROM STDIN of %d rows, %d rounds", o.copyRows, o.rounds)
		if rep.Copy, err = measureCopy(ctx, directPort, targets, o.copyRows, o.rounds, o.perfDir); err != nil {
			return err
		}
	}
	rep.LoadAfter = loadavg()
	rep.finish(targets, results, o.ratios, variants)

	fmt.Println()
	rep.writeTable(os.Stdout)
	if o.jsonPath != "" {
		if err := rep.writeJSON(o.jsonPath); err != nil {
			return err
		}
	}
	if o.mdPath != "" {
		if err := rep.writeMarkdown(o.mdPath); err != nil {
			return err
		}
	}
	return nil
}

// startTargets starts PostgreSQL, loads the data and starts the proxies
// named by -targets, each checked with a query. It records the versions of
// what runs in versions.
func startTargets(ctx context.Context, o options, e *env, versions map[string]string) (targets []target, variants []variant, directPort int, err error) {
	if o.upstream != "unix" && o.upstream != "tcp" {
		usageError("-upstream must be unix or tcp")
	}
	s := &servers{env: e, clients: o.clients, unix: o.upstream == "unix"}
	if slices.ContainsFunc(o.targets, func(t string) bool { return strings.HasPrefix(t, "pgcloak") }) {
		if variants, err = makeVariants(ctx, e, o.pgcloak, o.gomaxprocs); err != nil {
			return nil, nil, 0, err
		}
		for _, v := range variants {
			versions["pgcloak"+v.suffix] = v.version
		}
	}
	if slices.Contains(o.targets, "pgbouncer") {
		versions["pgbouncer"] = firstLine("pgbouncer", "--version")
	}
	versions["pgbench"] = firstLine(pgbenchPath(), "--version")

	logf("starting PostgreSQL")
	s.pg = harness.StartPostgres(e, harness.PostgresOptions{Settings: map[string]string{
		// pgbench_accounts and its index take about 16 MB per unit of scale.
		"shared_buffers": fmt.Sprintf("'%dMB'", max(128, 32*o.scale)),
	}})
	versions["postgres"] = "PostgreSQL " + strings.TrimPrefix(firstLine(filepath.Join(s.pg.BinDir, "postgres"), "--version"), "postgres (PostgreSQL) ")
	logf("loading data: pgbench -i -s %d", o.scale)
	if out, err := pgbench(ctx, s.pg.Port, "-i", "-q", "-s", strconv.Itoa(o.scale)); err != nil {
		return nil, nil, 0, fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	if o.setup != "" {
		sql, err := os.ReadFile(o.setup)
		if err != nil {
			return nil, nil, 0, err
		}
		if err := s.pg.ExecDB(benchDB, string(sql)); err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", o.setup, err)
		}
	}

	for _, name := range o.targets {
		k := findTarget(name)
		vs := []variant{{}}
		if k.perVariant {
			vs = variants
		}
		for _, v := range vs {
			t := target{Name: name + v.suffix, Kind: name}
			if k.perVariant {
				t.Variant = strings.TrimPrefix(v.suffix, "-")
			}
			if t.Port, t.PID, err = k.start(ctx, s, v); err != nil {
				return nil, nil, 0, fmt.Errorf("start %s: %w", t.Name, err)
			}
			if err := checkTarget(ctx, t.Port); err != nil {
				return nil, nil, 0, fmt.Errorf("%s on port %d does not answer queries: %w", t.Name, t.Port, err)
			}
			targets = append(targets, t)
		}
	}
	return targets, variants, s.pg.Port, nil
}

// measureRounds runs every workload against every target, alternating
// targets, -rounds times, and returns the TPS and CPU time per transaction
// of each run. With cipher set, it also measures the cipher's own cost once
// per round.
func measureRounds(ctx context.Context, o options, targets []target, workloads []workload, cipher *cipherCost) ([]workloadResult, error) {
	results := make([]workloadResult, len(workloads))
	for i, w := range workloads {
		results[i] = workloadResult{Name: w.Name, Args: w.Args, TPS: map[string][]float64{}, CPU: map[string][]float64{}}
	}
	for r := 1; r <= o.rounds; r++ {
		for i, w := range workloads {
			for _, t := range targets {
				stopPerf, err := startPerf(ctx, o.perfDir, t, fmt.Sprintf("%s-%s-%d", t.Name, w.Name, r))
				if err != nil {
					return nil, err
				}
				m, err := measure(ctx, o, t, w, int(o.duration))
				stopPerf()
				if err != nil {
					return nil, err
				}
				results[i].TPS[t.Name] = append(results[i].TPS[t.Name], m.tps)
				cpu := ""
				if t.PID != 0 {
					results[i].CPU[t.Name] = append(results[i].CPU[t.Name], m.cpuPerTxn)
					cpu = fmt.Sprintf("  %9.2f µs CPU/txn", m.cpuPerTxn)
				}
				logf("round %d/%d  %-10s %-16s %9.0f tps%s", r, o.rounds, w.Name, t.Name, m.tps, cpu)
			}
		}
		if cipher != nil {
			if err := cipher.measure(); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// logf prints progress to stderr, so that stdout holds only the table.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// busy reports whether the 1-minute load average exceeds the CPU count.
func busy(load string, cpus int) bool {
	one, _, _ := strings.Cut(load, " ")
	l, err := strconv.ParseFloat(one, 64)
	return err == nil && l > float64(cpus)
}

// loadavg returns the 1-, 5- and 15-minute load averages, a hint of how busy the machine
// was; empty if unknown.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
