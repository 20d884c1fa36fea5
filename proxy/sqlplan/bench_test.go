package sqlplan

import "testing"

// Last results: go test -bench . -benchmem ./proxy/sqlplan/ on the 2-core
// VM, Go 1.26, pg_query_go v6.2.5. The VM was shared with other builds
// (load 5-15), so these are the best of several runs; single runs were up to
// 10x slower.
//
//	BenchmarkAnalyzePassthrough-2          160 ns/op        0 B/op     0 allocs/op
//	BenchmarkAnalyzePassthroughUpdate-2    190 ns/op        0 B/op     0 allocs/op
//	BenchmarkAnalyzeInsertParams-2       43000 ns/op     6456 B/op   112 allocs/op
//	BenchmarkAnalyzeInsertLiterals-2     35000 ns/op     6816 B/op   118 allocs/op
//	BenchmarkAnalyzeInsertTyped-2        50000 ns/op     6416 B/op   117 allocs/op
//	BenchmarkAnalyzeLookup-2             40000 ns/op     5864 B/op   113 allocs/op
//	BenchmarkAnalyzeReport-2            108000 ns/op    15672 B/op   276 allocs/op
//
// For scale, on the same VM: pg_query.Parse of the literal INSERT ~26 µs,
// of "SELECT 1" ~12 µs (mostly fixed cgo and memory-context cost);
// pg_query.Scan ~13 µs. A protected statement costs about one parse, plus a
// scan when literals must be delimited, plus a second parse per cast literal.

func benchAnalyze(b *testing.B, sql string) {
	cat := newFakeCatalog()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Analyze(sql, cat, defaultPath); err != nil {
			b.Fatal(err)
		}
	}
}

// A statement on an unprotected table: the text filter answers without
// parsing.
func BenchmarkAnalyzePassthrough(b *testing.B) {
	benchAnalyze(b, `SELECT abalance FROM pgbench_accounts WHERE aid = $1`)
}

// A longer unprotected statement (pgbench's UPDATE, ~70 bytes).
func BenchmarkAnalyzePassthroughUpdate(b *testing.B) {
	benchAnalyze(b, `UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2`)
}

// A protected INSERT with parameters: parse, no token scan.
func BenchmarkAnalyzeInsertParams(b *testing.B) {
	benchAnalyze(b, `INSERT INTO customers (id, email, phone, full_name) VALUES ($1, $2, $3, $4)`)
}

// A protected INSERT with literals: parse and scan.
func BenchmarkAnalyzeInsertLiterals(b *testing.B) {
	benchAnalyze(b, `INSERT INTO customers (id, email, phone, full_name) VALUES (1, 'a@example.com', '+81 3 1234 5678', '山田太郎')`)
}

// A protected INSERT with a typed literal (the cast range is verified by a
// second parse).
func BenchmarkAnalyzeInsertTyped(b *testing.B) {
	benchAnalyze(b, `INSERT INTO customers (id, birth_date) VALUES (1, DATE '2024-01-01')`)
}

// A deterministic point lookup.
func BenchmarkAnalyzeLookup(b *testing.B) {
	benchAnalyze(b, `SELECT id, email, phone FROM customers WHERE ssn = $1`)
}

// A protected SELECT with a join, a subquery and grouping.
func BenchmarkAnalyzeReport(b *testing.B) {
	benchAnalyze(b, `SELECT c.ssn, count(*) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.total > $1 AND c.id IN (SELECT id FROM customers WHERE ssn = 'x') GROUP BY c.ssn`)
}
