// Package harness starts real servers for pgcloak's integration tests and for
// `pgcloak demo`: a throwaway PostgreSQL cluster (StartPostgres), a Vault dev
// server with the transit engine enabled (StartVault), and a small test CA for
// TLS (NewCA).
//
// Every server runs as a child process in its own temporary directory and is
// stopped, and its directory removed, by a Cleanup registered on the TB that
// started it, also when the test fails. Children also get SIGKILL from the
// kernel if the test binary dies without running its cleanups (a panic, a
// test timeout), so no server outlives `go test`.
//
// PostgreSQL refuses to run as root. When the process runs as root, initdb
// and postgres run as the unprivileged `postgres` system user and the cluster
// directory is owned by it.
//
// Functions that take a TB call t.Fatalf when something goes wrong: a missing
// binary is a failure with an install hint, never a skip.
package harness
