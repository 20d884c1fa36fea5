package main

import (
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
)

func TestParseTPS(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      float64
	}{
		{"PostgreSQL 15", `transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 8 s
number of transactions actually processed: 263524
number of failed transactions: 0 (0.000%)
latency average = 0.243 ms
initial connection time = 10.544 ms
tps = 32940.512345 (without initial connection time)
`, 32940.512345},
		{"PostgreSQL 13", `latency average = 0.301 ms
tps = 26500.100000 (including connections establishing)
tps = 26583.700000 (excluding connections establishing)
`, 26583.7},
	} {
		got, err := parseTPS(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("%s: parseTPS = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseTPS("pgbench: error: connection refused\n"); err != errNoTPS {
		t.Errorf("no tps line: err = %v, want errNoTPS", err)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{7: "7", 999.6: "1,000", 41234: "41,234", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with spaces and parentheses, as a process may choose.
	stat := "4242 (pg (bouncer) x) S 1 4242 4242 0 -1 4194560 3000 0 0 0 1234 567 0 0 20 0 1 0 657623 3133440 390 18446744073709551615\n"
	got, err := parseStatTicks([]byte(stat))
	if err != nil || got != 1234+567 {
		t.Fatalf("parseStatTicks = %d, %v; want %d", got, err, 1234+567)
	}
	if _, err := parseStatTicks([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short line accepted")
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("procCPU of this process: %v", err)
	}
}

func TestParseTxns(t *testing.T) {
	out := "number of clients: 8\nnumber of transactions actually processed: 263524\nnumber of failed transactions: 0 (0.000%)\n"
	if n, err := parseTxns(out); err != nil || n != 263524 {
		t.Fatalf("parseTxns = %d, %v", n, err)
	}
	if _, err := parseTxns("tps = 1\n"); err == nil {
		t.Error("no count accepted")
	}
}

// TestExpandRatios: a ratio naming a pgcloak kind stands for each variant,
// paired with like; several binaries add LAST/FIRST per GOMAXPROCS.
func TestExpandRatios(t *testing.T) {
	var variants []variant
	for _, b := range []string{"before", "after"} {
		for _, p := range []int{1, 2} {
			variants = append(variants, variant{label: b, procs: p, suffix: "-" + b + "-p" + strconv.Itoa(p)})
		}
	}
	targets := []target{{Name: "direct", Kind: "direct"}, {Name: "pgbouncer", Kind: "pgbouncer"}}
	for _, v := range variants {
		targets = append(targets, target{Name: "pgcloak" + v.suffix, Kind: "pgcloak", Variant: v.suffix[1:]})
	}
	got := expandRatios([]string{"pgcloak/pgbouncer", "pgbouncer/direct", "pgcloak-enc/direct"}, targets, variants)
	want := []string{
		"pgcloak-before-p1/pgbouncer", "pgcloak-before-p2/pgbouncer", "pgcloak-after-p1/pgbouncer", "pgcloak-after-p2/pgbouncer",
		"pgbouncer/direct",
		"pgcloak-after-p1/pgcloak-before-p1", "pgcloak-after-p2/pgcloak-before-p2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("expandRatios =\n%v\nwant\n%v", got, want)
	}
}

func TestParseBinarySpec(t *testing.T) {
	for in, want := range map[string]binarySpec{
		".":                  {"this", "."},
		"git:19507be":        {"19507be", "git:19507be"},
		"before=git:19507be": {"before", "git:19507be"},
		"/tmp/x/pgcloak":     {"pgcloak", "/tmp/x/pgcloak"},
		"new=/tmp/x/pgcloak": {"new", "/tmp/x/pgcloak"},
	} {
		if got, err := parseBinarySpec(in); err != nil || got != want {
			t.Errorf("parseBinarySpec(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"a=", "a/b=.", "a,b=."} {
		if _, err := parseBinarySpec(bad); err == nil {
			t.Errorf("parseBinarySpec(%q) accepted", bad)
		}
	}
}
