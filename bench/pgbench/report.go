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
	Variants   []variantInfo     `json:"pgcloak_variants"`
	Versions   map[string]string `json:"versions"`
	Targets    []target          `json:"targets"`
	RatioNames []string          `json:"ratio_names"` // "A/B": median TPS (and CPU per transaction) of A over B's
	Workloads  []workloadResult  `json:"workloads"`
	Cipher     *cipherCost       `json:"cipher,omitempty"`
	Copy       []copyResult      `json:"copy,omitempty"`
}

// variantInfo describes one pgcloak variant of the run.
type variantInfo struct {
	Suffix     string `json:"suffix"` // of its targets' names
	Label      string `json:"label"`
	Version    string `json:"version"`
	GOMAXPROCS int    `json:"gomaxprocs"` // 0: Go's default
}

// workloadResult holds the measurements of one workload.
type workloadResult struct {
	Name   string               `json:"name"`
	Args   []string             `json:"pgbench_args"`
	TPS    map[string][]float64 `json:"tps"`        // by target, one per round in order
	Median map[string]float64   `json:"median_tps"` // by target
	Ratios map[string]float64   `json:"ratios"`     // by ratio name
	// CPU is the target process's CPU time per transaction, µs, by target
	// (those with a process of their own), one per round.
	CPU       map[string][]float64 `json:"cpu_us_per_txn"`
	MedianCPU map[string]float64   `json:"median_cpu_us_per_txn"`
	CPURatios map[string]float64   `json:"cpu_ratios"` // by ratio name, where both have CPU
}

// finish stores the results and computes medians and the ratios whose
// targets are both in the run (see expandRatios).
func (r *report) finish(targets []target, results []workloadResult, ratios []string, variants []variant) {
	r.Targets = targets
	r.RatioNames = expandRatios(ratios, targets, variants)
	for i := range results {
		w := &results[i]
		w.Median, w.Ratios = map[string]float64{}, map[string]float64{}
		w.MedianCPU, w.CPURatios = map[string]float64{}, map[string]float64{}
		for _, t := range targets {
			w.Median[t.Name] = median(w.TPS[t.Name])
			if len(w.CPU[t.Name]) > 0 {
				w.MedianCPU[t.Name] = median(w.CPU[t.Name])
			}
		}
		for _, name := range r.RatioNames {
			a, b, _ := strings.Cut(name, "/")
			w.Ratios[name] = w.Median[a] / w.Median[b]
			if ca, cb := w.MedianCPU[a], w.MedianCPU[b]; ca > 0 && cb > 0 {
				w.CPURatios[name] = ca / cb
			}
		}
	}
	r.Workloads = results
}

// expandRatios turns the -ratios names into ratios of the run's targets. A
// side that names a pgcloak kind stands for each of its variants (paired by
// variant when both sides do: pgcloak-enc/pgcloak compares like with like);
// ratios naming a target not in the run are left out. With more than one
// binary, each target of a pgcloak kind is also compared with the same
// target of the first binary: LAST/FIRST.
func expandRatios(names []string, targets []target, variants []variant) []string {
	side := func(n string) []target {
		var out []target
		for _, t := range targets {
			if t.Name == n || t.Kind == n && t.Variant != "" {
				out = append(out, t)
			}
		}
		return out
	}
	var out []string
	add := func(a, b target) {
		if n := a.Name + "/" + b.Name; a.Name != b.Name && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, name := range names {
		a, b, _ := strings.Cut(name, "/")
		for _, ta := range side(a) {
			for _, tb := range side(b) {
				if ta.Variant != "" && tb.Variant != "" && ta.Variant != tb.Variant {
					continue
				}
				add(ta, tb)
			}
		}
	}
	// Each variant of a later binary against the first binary's variant of
	// the same GOMAXPROCS, target kind by target kind.
	byName := map[string]target{}
	for _, t := range targets {
		byName[t.Name] = t
	}
	for _, later := range variants {
		if later.label == variants[0].label {
			continue
		}
		for _, base := range variants {
			if base.label != variants[0].label || base.procs != later.procs {
				continue
			}
			for _, t := range targets {
				if t.Variant != "" && "-"+t.Variant == later.suffix {
					if u, ok := byName[t.Kind+base.suffix]; ok {
						add(t, u)
					}
				}
			}
		}
	}
	return out
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
	for _, v := range r.Variants {
		procs := "Go's default GOMAXPROCS"
		if v.GOMAXPROCS > 0 {
			procs = fmt.Sprintf("GOMAXPROCS=%d", v.GOMAXPROCS)
		}
		name := "pgcloak"
		if v.Suffix != "" {
			name += " " + strings.TrimPrefix(v.Suffix, "-")
		}
		parts = append(parts, fmt.Sprintf("%s: %s with %s", name, v.Version, procs))
	}
	return strings.Join(parts, "; ")
}

// has reports whether the named target was measured.
func (r *report) has(name string) bool {
	return slices.ContainsFunc(r.Targets, func(t target) bool { return t.Name == name })
}

// cpuTargets are the targets whose CPU time was measured.
func (r *report) cpuTargets() []target {
	var out []target
	for _, t := range r.Targets {
		if t.PID != 0 {
			out = append(out, t)
		}
	}
	return out
}

// cpuRatioNames are the ratios both of whose targets have CPU times.
func (r *report) cpuRatioNames() []string {
	var out []string
	for _, name := range r.RatioNames {
		a, b, _ := strings.Cut(name, "/")
		if r.hasCPU(a) && r.hasCPU(b) {
			out = append(out, name)
		}
	}
	return out
}

func (r *report) hasCPU(name string) bool {
	return slices.ContainsFunc(r.Targets, func(t target) bool { return t.Name == name && t.PID != 0 })
}

// writeTable prints medians with their spread, and the ratios: TPS, then
// CPU time per transaction, then the encryption figures.
func (r *report) writeTable(out io.Writer) {
	fmt.Fprintf(out, "%s, scale %d: median TPS of %s (± half the range)\n", r.command(), r.Scale, r.rounds())
	fmt.Fprintf(out, "%s; %d CPUs, load average %s before, %s after\n\n", r.software(), r.CPUs, r.LoadBefore, r.LoadAfter)
	r.writeSection(out, r.Targets, r.RatioNames, func(w workloadResult, t string) string {
		return fmt.Sprintf("%.0f ±%.0f%%", w.Median[t], 100*spread(w.TPS[t]))
	}, func(w workloadResult, name string) float64 { return w.Ratios[name] })
	if cpu := r.cpuTargets(); len(cpu) > 0 {
		fmt.Fprintf(out, "\nCPU time of the proxy process per transaction, µs (user+system from /proc/PID/stat), median of %s:\n\n", r.rounds())
		r.writeSection(out, cpu, r.cpuRatioNames(), func(w workloadResult, t string) string {
			return fmt.Sprintf("%.2f ±%.0f%%", w.MedianCPU[t], 100*spread(w.CPU[t]))
		}, func(w workloadResult, name string) float64 { return w.CPURatios[name] })
	}
	r.writePerValue(out)
	if r.Cipher != nil {
		r.Cipher.write(out)
	}
	for _, c := range r.Copy {
		c.write(out, r.Targets)
	}
}

// writeSection prints one table: a row per workload, a column per target,
// then the ratios.
func (r *report) writeSection(out io.Writer, targets []target, ratios []string, cell func(workloadResult, string) string, ratio func(workloadResult, string) float64) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t", t.Name)
	}
	for _, name := range ratios {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw)
	for _, w := range r.Workloads {
		fmt.Fprintf(tw, "%s\t", w.Name)
		for _, t := range targets {
			fmt.Fprintf(tw, "%s\t", cell(w, t.Name))
		}
		for _, name := range ratios {
			fmt.Fprintf(tw, "%.2f\t", ratio(w, name))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// perValue is the CPU pgcloak spends per protected value of a wide read:
// the CPU per row of the protected workload minus that of its plaintext
// twin, per protected value, next to the cipher's own cost.
type perValue struct {
	Target, Mode         string
	PlainRow, ProtRow    float64 // ns of CPU per row
	PerValue, CipherOpen float64 // ns
}

// perValues finds the workload pairs of perValueWorkloads in the run.
func (r *report) perValues() []perValue {
	if r.Cipher == nil {
		return nil
	}
	byName := map[string]workloadResult{}
	for _, w := range r.Workloads {
		byName[w.Name] = w
	}
	var out []perValue
	for _, pw := range perValueWorkloads {
		for _, t := range r.Targets {
			if t.Kind != "pgcloak-enc" {
				continue
			}
			for _, mode := range []string{"simple", "extended", "prepared"} {
				plain, ok1 := byName[pw.plain+":"+mode]
				prot, ok2 := byName[pw.protected+":"+mode]
				if !ok1 || !ok2 {
					continue
				}
				v := perValue{Target: t.Name, Mode: mode, CipherOpen: median(r.Cipher.GCMOpen)}
				v.PlainRow = plain.MedianCPU[t.Name] * 1e3 / float64(pw.rows)
				v.ProtRow = prot.MedianCPU[t.Name] * 1e3 / float64(pw.rows)
				v.PerValue = (v.ProtRow - v.PlainRow) / float64(pw.values)
				out = append(out, v)
			}
		}
	}
	return out
}

// writePerValue prints perValues.
func (r *report) writePerValue(out io.Writer) {
	for i, v := range r.perValues() {
		if i == 0 {
			fmt.Fprintf(out, "\nCPU per protected value of the %d-row SELECT (pgcloak's CPU per row, protected minus plaintext, / %d values):\n", bigRows, 3)
		}
		fmt.Fprintf(out, "  %s %s: %.0f ns/row plaintext, %.0f ns/row protected: %.0f ns per value = %.2f× an AES-GCM open (%.0f ns)\n",
			v.Target, v.Mode, v.PlainRow, v.ProtRow, v.PerValue, v.PerValue/v.CipherOpen, v.CipherOpen)
	}
}

// writeMarkdown writes the tables for README.md, with a caption that says
// how they were measured.
func (r *report) writeMarkdown(path string) error {
	var b strings.Builder
	cpu := r.cpuTargets()
	cpuRatios := r.cpuRatioNames()
	b.WriteString("| workload |")
	align := "|---|"
	for _, t := range r.Targets {
		fmt.Fprintf(&b, " %s |", title(t))
		align += "--:|"
	}
	for _, name := range r.RatioNames {
		fmt.Fprintf(&b, " %s |", r.ratioTitle(name))
		align += "--:|"
	}
	for _, t := range cpu {
		fmt.Fprintf(&b, " %s CPU µs/txn |", title(t))
		align += "--:|"
	}
	for _, name := range cpuRatios {
		fmt.Fprintf(&b, " CPU %s |", r.ratioTitle(name))
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
		for _, t := range cpu {
			fmt.Fprintf(&b, " %.1f |", w.MedianCPU[t.Name])
		}
		for _, name := range cpuRatios {
			fmt.Fprintf(&b, " %.2f× |", w.CPURatios[name])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nMedian TPS of %s of `%s` per workload (pgbench scale %d), the targets alternating within each round, "+
		"all on one %d-CPU machine (load average %s before, %s after); CPU: user+system time of the proxy process per transaction. "+
		"%s. Measured %s with `go run ./bench/pgbench`.\n",
		r.rounds(), r.command(), r.Scale, r.CPUs, r.LoadBefore, r.LoadAfter, r.software(), r.Started.Format("2006-01-02"))
	if pv := r.perValues(); len(pv) > 0 {
		b.WriteString("\n| target | mode | CPU ns/row plaintext | CPU ns/row protected | CPU ns per protected value | AES-GCM open alone (ns) | ratio |\n|---|---|--:|--:|--:|--:|--:|\n")
		for _, v := range pv {
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f× |\n", v.Target, v.Mode, v.PlainRow, v.ProtRow, v.PerValue, v.CipherOpen, v.PerValue/v.CipherOpen)
		}
	}
	if len(r.Copy) > 0 {
		b.WriteString("\n| COPY FROM | target | plaintext rows/s | protected rows/s | PostgreSQL alone, same ciphertext | protected / PostgreSQL alone | CPU ns/row protected |\n|---|---|--:|--:|--:|--:|--:|\n")
		for _, c := range r.Copy {
			m := func(name string) float64 { return median(c.Rate[name]) }
			for _, t := range r.Targets {
				if t.Kind != "pgcloak-enc" {
					continue
				}
				p, e := t.Name+" plaintext", t.Name+" protected"
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.2f× | %.0f |\n", c.Format, t.Name, thousands(m(p)), thousands(m(e)),
					thousands(m("direct ciphertext")), m(e)/m("direct ciphertext"), median(c.CPU[e]))
			}
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ratioTitle is a ratio's name for people.
func (r *report) ratioTitle(name string) string {
	a, c, _ := strings.Cut(name, "/")
	find := func(n string) string {
		for _, t := range r.Targets {
			if t.Name == n {
				return title(t)
			}
		}
		return n
	}
	return find(a) + "/" + find(c)
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
