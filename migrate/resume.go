package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pgcloak.migrations: where a run records its progress batch by batch, and where the next run resumes from.

// progressSQL creates the table that keeps the progress of migrations.
const progressSQL = `
CREATE SCHEMA IF NOT EXISTS pgcloak;
CREATE TABLE IF NOT EXISTS pgcloak.migrations (
	table_name     text        NOT NULL,
	columns        text        NOT NULL,
	operation      text        NOT NULL,
	key_columns    text        NOT NULL,
	last_key       text[],
	rows_done      bigint      NOT NULL DEFAULT 0,
	values_changed bigint      NOT NULL DEFAULT 0,
	values_skipped bigint      NOT NULL DEFAULT 0,
	runs           integer     NOT NULL DEFAULT 1,
	started_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now(),
	finished_at    timestamptz,
	PRIMARY KEY (table_name, columns, operation)
);
COMMENT ON TABLE pgcloak.migrations IS 'progress of pgcloak migrate encrypt/rotate/decrypt; a run resumes after last_key';`

// EnsureProgressTable creates pgcloak.migrations unless it exists.
func EnsureProgressTable(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgcloak.migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("pgcloak.migrations: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, progressSQL); err != nil {
		return fmt.Errorf("create pgcloak.migrations: %w", err)
	}
	return nil
}

func (r *runner) key() []any { return []any{r.o.Rel.String(), r.columns, string(r.o.Op)} }

// start resumes an unfinished migration of the same table, columns,
// operation and primary key, or starts a new one.
func (r *runner) start(ctx context.Context) error {
	if err := EnsureProgressTable(ctx, r.conn); err != nil {
		return err
	}
	names := make([]string, len(r.o.Rel.PK))
	for i, k := range r.o.Rel.PK {
		names[i] = k.Name
	}
	keyCols := strings.Join(names, ",")
	var last []string
	var done int64
	var finished bool
	var have string
	err := r.conn.QueryRow(ctx, `SELECT key_columns, last_key, rows_done, finished_at IS NOT NULL FROM pgcloak.migrations
		WHERE table_name = $1 AND columns = $2 AND operation = $3`, r.key()...).Scan(&have, &last, &done, &finished)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("pgcloak.migrations: %w", err)
	case !finished && have == keyCols && len(last) == len(r.o.Rel.PK):
		r.last, r.res.Resumed, r.res.ResumeKey, r.res.Done = last, true, last, done
		_, err := r.conn.Exec(ctx, `UPDATE pgcloak.migrations SET runs = runs + 1, updated_at = now()
			WHERE table_name = $1 AND columns = $2 AND operation = $3`, r.key()...)
		if err != nil {
			return fmt.Errorf("pgcloak.migrations: %w", err)
		}
		return nil
	}
	_, err = r.conn.Exec(ctx, `INSERT INTO pgcloak.migrations (table_name, columns, operation, key_columns) VALUES ($1, $2, $3, $4)
		ON CONFLICT (table_name, columns, operation) DO UPDATE SET key_columns = $4, last_key = NULL, rows_done = 0,
			values_changed = 0, values_skipped = 0, runs = 1, started_at = now(), updated_at = now(), finished_at = NULL`,
		append(r.key(), keyCols)...)
	if err != nil {
		return fmt.Errorf("pgcloak.migrations: %w", err)
	}
	return nil
}

// total is the number of rows in the table: exact up to a million rows,
// the planner's estimate above (counting would read the whole table).
func (r *runner) total(ctx context.Context) int64 {
	var n int64
	if err := r.conn.QueryRow(ctx, `SELECT reltuples::bigint FROM pg_catalog.pg_class WHERE oid = $1`, r.o.Rel.OID).Scan(&n); err == nil && n >= 1_000_000 {
		return n
	}
	if err := r.conn.QueryRow(ctx, `SELECT count(*) FROM `+r.o.Rel.Ident()).Scan(&n); err != nil {
		return 0
	}
	return n
}

func (r *runner) progress(total int64) Progress {
	return Progress{Op: r.o.Op, Table: r.o.Rel.String(), Done: r.res.Done, Total: total, RunRows: r.res.Rows,
		Changed: r.res.Changed, Skipped: r.res.Skipped, Elapsed: r.res.Elapsed}
}
