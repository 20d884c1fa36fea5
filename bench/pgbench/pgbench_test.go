package main

import (
	"math"
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
