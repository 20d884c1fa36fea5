package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// A run: its options and result, and the loop over batches with retries.

// Op is what a run does to the values of its columns.
type Op string

const (
	// OpEncrypt encrypts every value that has no pgcloak header.
	OpEncrypt Op = "encrypt"
	// OpRotate re-encrypts every value whose key version is older than the
	// keyring's active one, or whose mode is not the configured one.
	OpRotate Op = "rotate"
	// OpDecrypt writes the canonical plaintext back in place of every
	// ciphertext.
	OpDecrypt Op = "decrypt"
)

// DefaultBatch is the number of rows per transaction when Options.Batch is 0.
const DefaultBatch = 1000

// Column is a protected column that a run migrates: its rule, resolved.
type Column struct {
	Name    string
	Type    *values.Type
	Mode    crypto.Mode
	ID      crypto.ColumnID
	Keyring *crypto.Keyring
}

// Options configures Run.
type Options struct {
	Op      Op
	Rel     *Relation // from Inspect; must have a primary key
	Columns []Column  // bytea columns of Rel
	// Batch is the number of rows per transaction (default DefaultBatch).
	Batch int
	// Throttle is a pause after each batch, to leave the database room.
	Throttle time.Duration
	// Progress receives the state after every batch; nil reports nothing.
	Progress Reporter
	// Log receives retries of batches that met a lock timeout or a
	// deadlock; nil logs nothing.
	Log *zap.Logger
}

// Result counts what a run did. Values are counted per column: a row with
// three protected columns is three values.
type Result struct {
	Resumed   bool     // the run continued an interrupted one
	ResumeKey []string // the primary key after which it continued
	Rows      int64    // rows this run went through
	Done      int64    // rows the migration went through, earlier runs included
	Changed   int64    // values written (encrypted, re-encrypted or decrypted)
	Skipped   int64    // values already in the wanted form (this run)
	Lost      int64    // values a concurrent write changed first (left to it)
	Elapsed   time.Duration
}

// Rate is the rows per second of this run.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// ValueError is a value that a run cannot migrate: not valid for the logical
// type, or ciphertext that does not decrypt. The run stops before writing
// anything of its batch; fix the row and run again (it resumes).
type ValueError struct {
	Table, Column string
	Key           []string // primary key of the row, as text
	Err           error
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("%s.%s, row with primary key (%s): %v", e.Table, Display(e.Column), strings.Join(e.Key, ", "), e.Err)
}

func (e *ValueError) Unwrap() error { return e.Err }

// ErrNotEncrypted is a plaintext value met by rotate.
var ErrNotEncrypted = errors.New("value is not pgcloak ciphertext; run pgcloak migrate encrypt on the table first")

// Run migrates the columns batch by batch in primary key order. Each batch
// is its own transaction:
//
//	SELECT pk, columns FROM t WHERE pk > $last ORDER BY pk LIMIT n FOR UPDATE
//	UPDATE t SET col = CASE WHEN col IS NOT DISTINCT FROM $old THEN $new ELSE col END … WHERE pk = …
//	UPDATE pgcloak.migrations SET last_key = …            (same transaction)
//
// The rows stay locked from the SELECT to the commit, and each value is
// replaced only if it still holds what was read (compare-and-set), so a
// write through pgcloak is never overwritten with an older value; a write
// that comes after the batch finds the new value and replaces it as usual.
// Values already in the wanted form are left alone, so running again never
// encrypts twice. Progress is kept in pgcloak.migrations in the batch's own
// transaction: a run that was killed resumes after the last committed
// batch. Batches that meet a deadlock, a serialization failure or a lock
// timeout are retried.
//
// The caller holds Lock.
func Run(ctx context.Context, conn *pgx.Conn, o Options) (Result, error) {
	r, err := newRunner(conn, o)
	if err != nil {
		return Result{}, err
	}
	begin := time.Now()
	if err := r.start(ctx); err != nil {
		return r.res, err
	}
	total := r.total(ctx)
	for {
		n, err := r.retry(ctx, r.batch)
		r.res.Elapsed = time.Since(begin)
		if err != nil {
			return r.res, err
		}
		if n == 0 {
			break
		}
		if o.Progress != nil {
			o.Progress.Report(r.progress(total))
		}
		if o.Throttle > 0 {
			select {
			case <-ctx.Done():
				return r.res, ctx.Err()
			case <-time.After(o.Throttle):
			}
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE pgcloak.migrations SET finished_at = now(), updated_at = now()
		WHERE table_name = $1 AND columns = $2 AND operation = $3`, r.key()...); err != nil {
		return r.res, fmt.Errorf("pgcloak.migrations: %w", err)
	}
	r.res.Elapsed = time.Since(begin)
	if o.Progress != nil {
		o.Progress.Finish(r.progress(max(total, r.res.Done)))
	}
	return r.res, nil
}

// runner is one Run.
type runner struct {
	o       Options
	conn    *pgx.Conn
	first   string // SELECT of the first batch
	next    string // SELECT of the batches after a key
	update  string
	last    []string // primary key of the last row done
	res     Result
	columns string // sorted column names, the progress row's key
	canon   []byte // scratch for canonical forms
}

func newRunner(conn *pgx.Conn, o Options) (*runner, error) {
	rel := o.Rel
	if len(rel.PK) == 0 {
		return nil, fmt.Errorf("%s has no primary key; migrate goes through a table in primary key order: add one (ALTER TABLE %s ADD PRIMARY KEY (…))", rel.String(), rel.Ident())
	}
	if len(o.Columns) == 0 {
		return nil, errors.New("no column to migrate")
	}
	for _, c := range o.Columns {
		a := rel.Attr(c.Name)
		if a == nil {
			return nil, fmt.Errorf("%s has no column %q", rel.String(), c.Name)
		}
		if !a.IsBytea() {
			return nil, fmt.Errorf("%s.%s is %s, not bytea: run pgcloak migrate plan --table %s first", rel.String(), Display(c.Name), a.Type, rel.String())
		}
		if slices.ContainsFunc(rel.PK, func(p Attr) bool { return p.Name == c.Name }) {
			return nil, fmt.Errorf("%s.%s is part of the primary key; pgcloak cannot migrate a primary key column in place", rel.String(), Display(c.Name))
		}
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	r := &runner{o: o, conn: conn}
	names := make([]string, len(o.Columns))
	for i, c := range o.Columns {
		names[i] = c.Name
	}
	slices.Sort(names)
	r.columns = strings.Join(names, ",")
	r.first, r.next = r.selectSQL("", o.Batch), r.selectSQL(r.afterKey(), o.Batch)
	r.update = updateSQL(rel, o.Columns)
	return r, nil
}

// retry runs fn again after a deadlock, a serialization failure or a lock
// timeout, backing off, up to 10 times.
func (r *runner) retry(ctx context.Context, fn func(context.Context) (int, error)) (int, error) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := fn(ctx)
		if err == nil || !retryable(err) || attempt == 10 || ctx.Err() != nil {
			return n, err
		}
		if r.o.Log != nil {
			r.o.Log.Warn("batch rolled back; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("in", delay))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "55P03": // serialization_failure, deadlock_detected, lock_not_available
		return true
	}
	return false
}
