package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the result of one run; it is also the -json output.
type report struct {
	Started    time.Time         `json:"started"`
	CPUs       int               `json:"cpus"`
	LoadBefore string            `json:"loadavg_before"` // 1, 5, 15 minutes
	LoadAfter  string            `json:"loadavg_after"`  // includes the benchmark's own load
	Rounds     int               `json:"rounds"`
	Duration   int               `json:"duration_s"` // per pgbench run
	Clients    int               `json:"clients"`
	Jobs       int               `json:"jobs"`
	Scale      int               `json:"scale"`
	GOMAXPROCS int               `json:"pgcloak_gomaxprocs"` // 0: Go's default
	Versions   map[string]string `json:"versions"`
	Targets    []target          `json:"targets"`
	RatioNames []string          `json:"ratio_names"` // "A/B": median TPS of A over B's
	Workloads  []workloadResult  `json:"workloads"`
}

// workloadResult holds the measurements of one workload.
type workloadResult struct {
	Name   string               `json:"name"`
	Args   []string             `json:"pgbench_args"`
	TPS    map[string][]float64 `json:"tps"`        // by target, one per round in order
	Median map[string]float64   `json:"median_tps"` // by target
	Ratios map[string]float64   `json:"ratios"`     // by ratio name
	// CPU is the proxy process's CPU time per transaction in µs, by
	// target, one per round (pgcloak targets only).
	CPU map[string][]float64 `json:"proxy_cpu_us_per_txn,omitempty"`
}

// finish stores the results and computes medians and the ratios whose
// targets are both in the run.
func (r *report) finish(targets []target, results []workloadResult, ratios []string) {
	r.Targets = targets
	for _, name := range ratios {
		a, b, _ := strings.Cut(name, "/")
		if r.has(a) && r.has(b) && a != b {
			r.RatioNames = append(r.RatioNames, name)
		}
	}
	for i := range results {
		w := &results[i]
		w.Median, w.Ratios = map[string]float64{}, map[string]float64{}
		for _, t := range targets {
			w.Median[t.Name] = median(w.TPS[t.Name])
		}
		for _, name := range r.RatioNames {
			a, b, _ := strings.Cut(name, "/")
			w.Ratios[name] = w.Median[a] / w.Median[b]
		}
	}
	r.Workloads = results
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// spread is half the range of xs relative to their median: the ± in the
// table.
func spread(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	return (slices.Max(xs) - slices.Min(xs)) / 2 / median(xs)
}

// command is the pgbench command line shared by the workloads.
func (r *report) command() string {
	return fmt.Sprintf("pgbench -n -c %d -j %d -T %d", r.Clients, r.Jobs, r.Duration)
}

func (r *report) rounds() string {
	if r.Rounds == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", r.Rounds)
}

// software names the versions of what was measured: PostgreSQL, and the
// proxies that were targets.
func (r *report) software() string {
	parts := []string{r.Versions["postgres"]}
	if r.has("pgbouncer") {
		parts = append(parts, r.Versions["pgbouncer"]+" in session mode")
	}
	if r.has("pgcloak") {
		procs := "Go's default GOMAXPROCS"
		if r.GOMAXPROCS > 0 {
			procs = fmt.Sprintf("GOMAXPROCS=%d", r.GOMAXPROCS)
		}
		parts = append(parts, fmt.Sprintf("pgcloak %s with %s", r.Versions["pgcloak"], procs))
	}
	return strings.Join(parts, "; ")
}

// has reports whether the named target was measured.
func (r *report) has(name string) bool {
	return slices.ContainsFunc(r.Targets, func(t target) bool { return t.Name == name })
}

// writeTable prints medians with their spread, and the ratios.
func (r *report) writeTable(out io.Writer) {
	fmt.Fprintf(out, "%s, scale %d: median TPS of %s (± half the range)\n", r.command(), r.Scale, r.rounds())
	fmt.Fprintf(out, "%s; %d CPUs, load average %s before, %s after\n\n", r.software(), r.CPUs, r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t", t.Name)
	}
	for _, name := range r.RatioNames {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw)
	for _, w := range r.Workloads {
		fmt.Fprintf(tw, "%s\t", w.Name)
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%.0f ±%.0f%%\t", w.Median[t.Name], 100*spread(w.TPS[t.Name]))
		}
		for _, name := range r.RatioNames {
			fmt.Fprintf(tw, "%.2f\t", w.Ratios[name])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	r.writeCPU(out)
}

// writeCPU prints the proxies' median CPU time per transaction, when
// measured.
func (r *report) writeCPU(out io.Writer) {
	var names []string
	for _, t := range r.Targets {
		if len(r.Workloads) > 0 && len(r.Workloads[0].CPU[t.Name]) > 0 {
			names = append(names, t.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(out, "\nCPU time of the proxy process per transaction, µs (user+system from /proc, median of %s)\n\n", r.rounds())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	if len(names) == 2 {
		fmt.Fprintf(tw, "%s/%s\t", names[1], names[0])
	}
	fmt.Fprintln(tw)
	for _, w := range r.Workloads {
		fmt.Fprintf(tw, "%s\t", w.Name)
		for _, n := range names {
			fmt.Fprintf(tw, "%.1f ±%.0f%%\t", median(w.CPU[n]), 100*spread(w.CPU[n]))
		}
		if len(names) == 2 {
			fmt.Fprintf(tw, "%.2f\t", median(w.CPU[names[1]])/median(w.CPU[names[0]]))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// writeMarkdown writes the table for README.md, with a caption that says how
// it was measured.
func (r *report) writeMarkdown(path string) error {
	var b strings.Builder
	b.WriteString("| workload |")
	align := "|---|"
	for _, t := range r.Targets {
		fmt.Fprintf(&b, " %s |", title(t.Name))
		align += "--:|"
	}
	for _, name := range r.RatioNames {
		a, c, _ := strings.Cut(name, "/")
		fmt.Fprintf(&b, " %s/%s |", title(a), title(c))
		align += "--:|"
	}
	b.WriteString("\n" + align + "\n")
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, "| `%s` |", strings.Join(w.Args, " "))
		for _, t := range r.Targets {
			fmt.Fprintf(&b, " %s |", thousands(w.Median[t.Name]))
		}
		for _, name := range r.RatioNames {
			fmt.Fprintf(&b, " %.2f× |", w.Ratios[name])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nMedian TPS of %s of `%s` per workload (pgbench scale %d), the targets alternating within each round, "+
		"all on one %d-CPU machine (load average %s before, %s after). "+
		"%s. Measured %s with `go run ./bench/pgbench`.\n",
		r.rounds(), r.command(), r.Scale, r.CPUs, r.LoadBefore, r.LoadAfter, r.software(), r.Started.Format("2006-01-02"))
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// thousands formats x rounded, with thin commas: 41234 → 41,234.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
