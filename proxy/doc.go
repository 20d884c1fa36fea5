// Package proxy is pgcloak's PostgreSQL wire-protocol relay.
//
// Every client connection gets its own upstream connection (session
// pooling is PostgreSQL's or PgBouncer's job, not ours), so BackendKeyData,
// backend PIDs, session state and cancel keys are PostgreSQL's own and behave
// exactly as without pgcloak.
//
//	client                        pgcloak                           PostgreSQL
//	  │ SSLRequest ─────────────────▶│ 'S' + TLS (cert set) or 'N'
//	  │ GSSENCRequest ──────────────▶│ 'N' (once)
//	  │ CancelRequest ──────────────▶│── key known? ── CancelRequest ───▶│
//	  │ StartupMessage ─────────────▶│── dial, SSLRequest per sslmode ──▶│
//	  │                              │── StartupMessage (untouched) ────▶│
//	  │◀──────────── Authentication* (SCRAM-SHA-256-PLUS removed) ───────│
//	  │ PasswordMessage/SASL* ──────────────────────────────────────────▶│
//	  │◀──── AuthenticationOk, ParameterStatus*, BackendKeyData, ReadyForQuery
//	  │                              │
//	  │ ════ relay: clientLoop (client→server), serverLoop (server→client) ════
//
// The relay knows nothing about encryption: a Hooks (hook.go; the engine
// in proxy/engine) gives each session a Hook that sees the message types it
// asks for; everything else is streamed through. Sessions without a hook
// and without TLS move to an epoll loop after authentication
// (fastrelay_linux.go).
//
// Operations: a reload swaps the settings of new connections (reload.go:
// upstream, TLS, limits); running sessions keep theirs. The admin console is
// the virtual database "pgcloak" (console.go: PostgreSQL checks the login,
// proxy/admin answers). PAUSE holds sessions at a transaction boundary on
// both relays (pause.go); upstream.go picks the host of a session by
// target_session_attrs and load_balance_hosts.
//
// Framing (wire/frame.go): one reader goroutine per direction reads whole
// messages from a 32 KiB buffer and forwards the raw frames; a message larger
// than the buffer is streamed in chunks, so memory per connection is flat
// whatever the result or COPY size. A larger message the hook must see whole
// is read into a buffer that grows with the bytes received, charged to
// limits.message_buffer_budget across all sessions (whole.go). Output is flushed before any read that
// may block and on ReadyForQuery: pipelined traffic is batched into few
// syscalls and nothing is held back while we wait. Passthrough allocates
// nothing per message.
//
// Errors pgcloak raises itself reach the client as an ErrorResponse with
// PostgreSQL's SQLSTATE for the condition and a message prefixed "pgcloak:".
// When either leg goes away both are closed; a client that vanishes with a
// query in flight has that query cancelled upstream.
//
// Limits (limits.go): connections not yet authenticated count against
// limits.max_pending_logins, sessions against max_client_connections;
// CancelRequests are rate-limited per source address. Shutdown (drain.go)
// closes each session at its next transaction boundary with 57P01.
package proxy
