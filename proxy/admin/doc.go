// Package admin is pgcloak's admin console: the virtual database "pgcloak"
// that psql (or any driver, in the simple query protocol) connects to, for
// the roles in admin_users. PostgreSQL checks the login (proxy/console.go
// relays it to admin_auth_database); the commands are answered here and
// never reach PostgreSQL.
//
//	SHOW CLIENTS     client sessions: id, user, database, state, since …
//	SHOW SERVERS     their upstream connections: host, TLS, backend PID
//	SHOW HOSTS       upstream hosts and their role (target_session_attrs)
//	SHOW DATABASES   databases with sessions, and whether they are paused
//	SHOW STATS       every pgcloak_* metric, as /metrics has it
//	SHOW RULES       protected columns and how the catalog matches them
//	SHOW KEYS        keyrings: KEK, versions, active version, last refresh
//	SHOW CONFIG      the configuration in force (secrets hidden)
//	SHOW VERSION     pgcloak's version
//	RELOAD           re-read the configuration file (as SIGHUP does)
//	PAUSE [db]       hold new statements of db (all databases) at a transaction boundary
//	RESUME [db]      let them go on
//	KILL id          end client session id
//	KILL db          end every client session of database db
//
// Answers are RowDescription, DataRow (all text) and CommandComplete, so
// psql prints tables. Several commands may be sent in one Query, separated
// by ';'. An unknown command gets SQLSTATE 42601 listing the commands; the
// extended query protocol gets 0A000 (answered up to Sync, so drivers stay
// in step).
//
// PAUSE returns once no session of the paused databases is inside a
// transaction or running a statement, or after PauseWait with a warning
// that names the sessions still inside a transaction (they are held when it
// ends). Sessions are held, not refused: see proxy/pause.go.
package admin
