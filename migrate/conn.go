package migrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The admin session a run works in: its settings, and the advisory lock that keeps one run per table.

// lockClass is the first key of the advisory lock that one migrate run per
// table holds: "pgmg".
const lockClass = 0x70676d67

// Lock takes the session-level advisory lock that lets one migrate command
// work on rel at a time, waiting up to wait for a run that is ending (a
// killed run's session may take a moment to go). release gives it back; the
// end of the session does too.
func Lock(ctx context.Context, conn *pgx.Conn, rel *Relation, wait time.Duration) (release func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(rel.String()))
	key := int32(h.Sum32())
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(lockClass), key).Scan(&ok); err != nil {
			return nil, fmt.Errorf("lock %s for migrate: %w", rel.String(), err)
		}
		if ok {
			return func() {
				_, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, $2)`, int32(lockClass), key)
			}, nil
		}
		if time.Now().After(deadline) {
			var pid int32
			_ = conn.QueryRow(ctx, `SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted`,
				int64(lockClass), int64(uint32(key))).Scan(&pid)
			return nil, fmt.Errorf("another pgcloak migrate works on %s (backend pid %d); wait for it to end, or end it: SELECT pg_terminate_backend(%d)", rel.String(), pid, pid)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Connect opens the admin connection a migration runs on. The session
// settings make text forms stable across runs (the primary key of the last
// row is kept as text) and bound the wait for a row lock.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	rp := cfg.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "pgcloak migrate"
	}
	rp["DateStyle"] = "ISO, MDY"
	rp["TimeZone"] = "UTC"
	rp["extra_float_digits"] = "1"
	rp["lock_timeout"] = "10s"
	rp["statement_timeout"] = "0"
	rp["idle_in_transaction_session_timeout"] = "0"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	return conn, nil
}
