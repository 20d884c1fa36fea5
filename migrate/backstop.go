package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// PlaintextError means rows still hold values without the pgcloak header
// where the backstop was to be validated: values written around pgcloak
// while the migration ran.
type PlaintextError struct {
	Table, Column string
	Rows          int64
}

func (e *PlaintextError) Error() string {
	return fmt.Sprintf("%d rows of %s hold values of %s without the pgcloak header (written around pgcloak while the migration ran?); "+
		"the constraint was not added: run pgcloak migrate encrypt --table %s again", e.Rows, e.Table, Display(e.Column), e.Table)
}

// AddBackstops adds and validates the backstop of each column unless it is
// there and valid. ADD … NOT VALID takes an ACCESS EXCLUSIVE lock for an
// instant (a short lock_timeout, retried, keeps it from queueing the
// application behind it); VALIDATE reads the table under a lock that lets
// reads and writes go on. When validation finds plaintext, the constraint is
// dropped again (it would refuse updates of those rows through pgcloak) and
// a *PlaintextError says how many rows.
func AddBackstops(ctx context.Context, conn *pgx.Conn, rel *Relation, columns []string) error {
	return AddBackstopsFor(ctx, conn, rel, columns, false)
}

// AddBackstopsFor is AddBackstops for columns that are subject-keyed (their
// backstop accepts only Subject values) or not.
func AddBackstopsFor(ctx context.Context, conn *pgx.Conn, rel *Relation, columns []string, subject bool) error {
	for _, c := range columns {
		name := catalog.BackstopName(c)
		var exists, valid bool
		err := conn.QueryRow(ctx, `SELECT true, convalidated FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND conname = $2`,
			rel.OID, name).Scan(&exists, &valid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return catalogErr(err)
		}
		if valid {
			continue
		}
		if !exists {
			if err := ddl(ctx, conn, catalog.BackstopSQLFor(rel.Schema, rel.Name, c, subject)); err != nil {
				return fmt.Errorf("add constraint %s: %w", name, err)
			}
		}
		_, err = conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", rel.Ident(), quote(name)))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23514" { // check_violation
			perr := &PlaintextError{Table: rel.String(), Column: c}
			_ = conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE NOT (%s)", rel.Ident(), catalog.CheckExpr(c, subject))).Scan(&perr.Rows)
			if derr := ddl(ctx, conn, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", rel.Ident(), quote(name))); derr != nil {
				return fmt.Errorf("%w (and dropping the unvalidated constraint %s failed: %v)", perr, name, derr)
			}
			return perr
		}
		if err != nil {
			return fmt.Errorf("validate constraint %s: %w", name, err)
		}
	}
	return nil
}

// DropBackstops drops the backstops of the columns, if there.
func DropBackstops(ctx context.Context, conn *pgx.Conn, rel *Relation, columns []string) error {
	for _, c := range columns {
		if err := ddl(ctx, conn, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", rel.Ident(), quote(catalog.BackstopName(c)))); err != nil {
			return fmt.Errorf("drop constraint %s: %w", catalog.BackstopName(c), err)
		}
	}
	return nil
}

// ddl runs a statement that needs an ACCESS EXCLUSIVE lock with a short
// lock_timeout, retrying with backoff: waiting for the lock for long would
// stall every query on the table queued behind it.
func ddl(ctx context.Context, conn *pgx.Conn, sql string) error {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, sql)
			return err
		})
		if err == nil || !retryable(err) || attempt == 15 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// Restore ends a decryption: in one transaction that holds an ACCESS
// EXCLUSIVE lock on the table, it drops the backstops, decrypts the values
// that are still ciphertext (written through pgcloak after migrate decrypt
// passed their rows) and changes the columns back to their logical types
// (RestoreSQL). Either all of it happens or none. o.Op must be OpDecrypt.
//
// Once it commits, pgcloak instances that still protect the columns must not
// serve the table: stop them or remove the rules first.
func Restore(ctx context.Context, conn *pgx.Conn, o Options) (Result, error) {
	if o.Op != OpDecrypt {
		return Result{}, errors.New("restore follows decrypt only")
	}
	r, err := newRunner(conn, o)
	if err != nil {
		return Result{}, err
	}
	begin := time.Now()
	var conds []string
	for _, c := range o.Columns {
		conds = append(conds, crypto.CheckExpr(c.Name))
	}
	cipher := "(" + strings.Join(conds, " OR ") + ")"
	first := r.selectSQL(cipher, r.o.Batch)
	next := r.selectSQL(cipher+" AND "+r.afterKey(), r.o.Batch)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+o.Rel.Ident()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			return fmt.Errorf("lock %s: %w", o.Rel.String(), err)
		}
		for _, c := range o.Columns {
			if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", o.Rel.Ident(), quote(catalog.BackstopName(c.Name)))); err != nil {
				return err
			}
		}
		var last []string
		for {
			var rows pgx.Rows
			var err error
			if last == nil {
				rows, err = tx.Query(ctx, first)
			} else {
				args := make([]any, len(last))
				for i, k := range last {
					args[i] = k
				}
				rows, err = tx.Query(ctx, next, args...)
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", o.Rel.String(), err)
			}
			b, err := r.read(rows)
			if err != nil {
				return err
			}
			if b.n == 0 {
				break
			}
			st, err := r.apply(ctx, tx, b)
			if err != nil {
				return err
			}
			last = b.keys[b.n-1]
			r.res.Rows += int64(b.n)
			r.res.Changed += st.changed
			r.res.Skipped += st.skipped
		}
		if sql := RestoreSQL(o.Rel, o.Columns); sql != "" {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("restore the column types: %w", err)
			}
		}
		return nil
	})
	r.res.Elapsed = time.Since(begin)
	return r.res, err
}
