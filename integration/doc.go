// Package integration holds pgcloak's end-to-end tests: real clients (psql,
// pgx v5, lib/pq) talk to real PostgreSQL processes through a pgcloak that
// runs in the test process, and every test states what a client observes.
//
// The servers come from package harness. Tests share one plain cluster (and
// one TLS cluster) per `go test` run, started on first use and stopped by
// TestMain; a test that needs special server settings starts its own. Each
// test starts its own pgcloak with startProxy, configured for the case.
//
// The fail-closed tests (failclosed_*_test.go, issue 10) hold pgcloak to its
// promise with an adversarial write corpus, a read corpus and a generative
// test, on a cluster of their own with one database per probe; see
// failclosed_test.go for what each probe asserts and how to run them alone.
//
// Nothing is skipped: a missing binary (psql, postgres) fails the test with
// the command that installs it.
//
// Run them with
//
//	go test ./integration/
package integration
