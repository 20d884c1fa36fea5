package migrate

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Progress is the state of a run after a batch.
type Progress struct {
	Op      Op
	Table   string
	Done    int64 // rows the migration went through, earlier runs included
	Total   int64 // rows in the table (the planner's estimate for big tables)
	RunRows int64 // rows this run went through
	Changed int64 // values written by this run
	Skipped int64 // values already in the wanted form (this run)
	Elapsed time.Duration
}

// Rate is this run's rows per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.RunRows) / p.Elapsed.Seconds()
}

// ETA is the time left at the current rate; false while unknown.
func (p Progress) ETA() (time.Duration, bool) {
	rate := p.Rate()
	if rate <= 0 || p.Total <= 0 {
		return 0, false
	}
	left := max(p.Total-p.Done, 0)
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second), true
}

// Reporter shows the progress of a run. Run calls it from one goroutine.
type Reporter interface {
	// Report is called after every batch.
	Report(Progress)
	// Finish is called once, when the run has gone through the table.
	Finish(Progress)
}

// Bar draws a one-line progress bar (rows done/total, percent, rows/s, ETA)
// on a terminal, redrawn in place at most ten times a second.
type Bar struct {
	w    io.Writer
	last time.Time
}

// NewBar returns a Bar that draws on w, a terminal.
func NewBar(w io.Writer) *Bar { return &Bar{w: w} }

// Report implements Reporter.
func (b *Bar) Report(p Progress) {
	if time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	fmt.Fprintf(b.w, "\r%s\x1b[K", BarLine(p, 30))
}

// Finish implements Reporter.
func (b *Bar) Finish(p Progress) {
	fmt.Fprintf(b.w, "\r%s\x1b[K\n", BarLine(p, 30))
	b.last = time.Time{}
}

// Break ends the line of a bar that a failed run left, so that what is
// printed next starts on a line of its own.
func (b *Bar) Break() {
	if !b.last.IsZero() {
		fmt.Fprintln(b.w)
		b.last = time.Time{}
	}
}

// BarLine renders p as a bar width characters wide and the figures:
//
//	encrypt public.customers [=========>          ]  98000/200000 rows  49%  24500 rows/s  ETA 4s
func BarLine(p Progress, width int) string {
	frac := 0.0
	if p.Total > 0 {
		frac = min(float64(p.Done)/float64(p.Total), 1)
	}
	filled := int(frac * float64(width))
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	eta := "ETA -"
	if d, ok := p.ETA(); ok {
		eta = "ETA " + d.String()
	}
	return fmt.Sprintf("%s %s [%s] %d/%d rows %3.0f%%  %.0f rows/s  %s", p.Op, p.Table, bar, p.Done, p.Total, frac*100, p.Rate(), eta)
}

// LogReporter logs the progress as structured lines, at most one per
// interval, for runs whose output is not a terminal.
type LogReporter struct {
	log      *zap.Logger
	interval time.Duration
	last     time.Time
}

// NewLogReporter logs to log every interval (5s when 0).
func NewLogReporter(log *zap.Logger, interval time.Duration) *LogReporter {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &LogReporter{log: log, interval: interval, last: time.Now()}
}

// Report implements Reporter.
func (l *LogReporter) Report(p Progress) {
	if time.Since(l.last) < l.interval {
		return
	}
	l.last = time.Now()
	l.line("progress", p)
}

// Finish implements Reporter.
func (l *LogReporter) Finish(p Progress) { l.line("done", p) }

func (l *LogReporter) line(msg string, p Progress) {
	fields := []zap.Field{zap.String("op", string(p.Op)), zap.String("table", p.Table), zap.Int64("rows_done", p.Done),
		zap.Int64("rows_total", p.Total), zap.Int64("values_changed", p.Changed), zap.Int64("values_skipped", p.Skipped),
		zap.Float64("rows_per_s", float64(int64(p.Rate()))), zap.Duration("elapsed", p.Elapsed.Round(time.Millisecond))}
	if d, ok := p.ETA(); ok {
		fields = append(fields, zap.Duration("eta", d))
	}
	l.log.Info(msg, fields...)
}
