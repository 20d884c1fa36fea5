// Package engine is pgcloak's encryption engine: it implements the relay's
// hook interface (proxy.Hooks, proxy.Hook) for the protected database.
//
// Protector (protector.go) holds the protection of the database — the rules
// resolved against the live catalog (catalog.go, protection.go) and the
// keyrings — and makes one session per client (session.go). A session sees
// the client's Query, Parse, Bind, Describe, Execute, Close, Sync and COPY
// messages (requests.go, extended.go, copy.go): it encrypts the literals and
// parameters of protected columns, refuses what it cannot handle safely (the
// refused statement is replaced by a placeholder that fails in the server,
// so the pipeline and the transaction stay in step), and queues what it
// expects back. It sees the server's RowDescription, DataRow,
// ParameterStatus, CommandComplete, ErrorResponse and ReadyForQuery
// (results.go): it decrypts protected result columns by table OID and
// attribute number and follows the session's state as the server confirms it
// (follow.go). state.go holds what the two loops share. What each session's
// role may read, write and search of each protected column is decided once
// at login and applied where statements and rows are planned (access.go);
// every result with protected values and every denial is counted for the
// audit log and the metrics (tally.go).
//
// Reloads (reload.go): a configuration's rules form a rule set; a session
// keeps the rule set it logged in with until it ends, and the catalog of
// every rule set in use is kept in step. SetRules makes a new rule set the
// one of new sessions.
//
// Concurrency: the relay's client loop and server loop call a session
// concurrently (see proxy.Hook); the state both touch is under cloak.mu
// (state.go), and the client loop waits (follow.go) only when a message
// depends on an answer the server has not given yet.
//
// docs/architecture.md follows a protected value through these files;
// docs/failclosed.md says how the engine, the SQL analyzer (proxy/sqlplan)
// and the database's backstop together keep plaintext out.
package engine
