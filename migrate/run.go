package migrate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/values"
)

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

// selectSQL reads a batch: the primary key as text, then the columns. The
// columns are qualified with the alias t so that ORDER BY names the table's
// primary key, not the text output column of the same name (ORDER BY
// prefers output columns: it would sort "10" before "9").
func (r *runner) selectSQL(where string, limit int) string {
	rel := r.o.Rel
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, k := range rel.PK {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "t.%s::text AS k%d", quote(k.Name), i)
	}
	for _, c := range r.o.Columns {
		b.WriteString(", t." + quote(c.Name))
	}
	b.WriteString(" FROM " + rel.Ident() + " AS t")
	if where != "" {
		b.WriteString(" WHERE " + where)
	}
	b.WriteString(" ORDER BY " + keyList(rel))
	if limit > 0 {
		fmt.Fprintf(&b, " LIMIT %d", limit)
	}
	b.WriteString(" FOR UPDATE")
	return b.String()
}

// afterKey is the condition "primary key > $1…" (a row comparison for a
// composite key, which a btree index serves).
func (r *runner) afterKey() string {
	rel := r.o.Rel
	params := make([]string, len(rel.PK))
	for i, k := range rel.PK {
		params[i] = fmt.Sprintf("$%d::text::%s", i+1, k.Type)
	}
	if len(rel.PK) == 1 {
		return "t." + quote(rel.PK[0].Name) + " > " + params[0]
	}
	return "(" + keyList(rel) + ") > (" + strings.Join(params, ", ") + ")"
}

// keyList is the primary key columns, qualified with the alias t.
func keyList(rel *Relation) string {
	names := make([]string, len(rel.PK))
	for i, k := range rel.PK {
		names[i] = "t." + quote(k.Name)
	}
	return strings.Join(names, ", ")
}

// updateSQL writes a batch in one statement: arrays of keys, old and new
// values, unnested and joined on the primary key. A NULL new value means
// "leave the column alone". It returns the rows updated and the values that
// a concurrent write had changed first.
func updateSQL(rel *Relation, cols []Column) string {
	var arrays, names, set, lost, join []string
	n := 0
	param := func(typ string) string { n++; return fmt.Sprintf("$%d::%s[]", n, typ) }
	for i, k := range rel.PK {
		arrays = append(arrays, param("text"))
		names = append(names, fmt.Sprintf("k%d", i))
		join = append(join, fmt.Sprintf("t.%s = v.k%d::%s", quote(k.Name), i, k.Type))
	}
	for i, c := range cols {
		arrays = append(arrays, param("bytea"), param("bytea"))
		names = append(names, fmt.Sprintf("o%d", i), fmt.Sprintf("n%d", i))
		q := quote(c.Name)
		set = append(set, fmt.Sprintf("%s = CASE WHEN v.n%d IS NULL THEN t.%s WHEN t.%s IS NOT DISTINCT FROM v.o%d THEN v.n%d ELSE t.%s END",
			q, i, q, q, i, i, q))
		lost = append(lost, fmt.Sprintf("(v.n%d IS NOT NULL AND t.%s IS DISTINCT FROM v.n%d)::int", i, q, i))
	}
	return fmt.Sprintf(`WITH u AS (UPDATE %s AS t SET %s FROM unnest(%s) AS v(%s) WHERE %s RETURNING %s AS lost)
SELECT count(*), coalesce(sum(lost), 0) FROM u`,
		rel.Ident(), strings.Join(set, ", "), strings.Join(arrays, ", "), strings.Join(names, ", "),
		strings.Join(join, " AND "), strings.Join(lost, " + "))
}

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

// batch migrates the next batch in its own transaction and returns the
// number of rows it read (0 at the end of the table).
func (r *runner) batch(ctx context.Context) (int, error) {
	tx, err := r.conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it is a no-op
	var rows pgx.Rows
	if r.last == nil {
		rows, err = tx.Query(ctx, r.first)
	} else {
		args := make([]any, len(r.last))
		for i, k := range r.last {
			args[i] = k
		}
		rows, err = tx.Query(ctx, r.next, args...)
	}
	if err != nil {
		return 0, fmt.Errorf("read a batch of %s: %w", r.o.Rel.String(), err)
	}
	b, err := r.read(rows)
	if err != nil {
		return 0, err
	}
	if b.n == 0 {
		return 0, tx.Commit(ctx)
	}
	st, err := r.apply(ctx, tx, b)
	if err != nil {
		return 0, err
	}
	last := b.keys[b.n-1]
	if _, err := tx.Exec(ctx, `UPDATE pgcloak.migrations SET last_key = $4, rows_done = rows_done + $5, values_changed = values_changed + $6,
		values_skipped = values_skipped + $7, updated_at = now() WHERE table_name = $1 AND columns = $2 AND operation = $3`,
		append(r.key(), last, int64(b.n), st.changed, st.skipped)...); err != nil {
		return 0, fmt.Errorf("pgcloak.migrations: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	r.last = last
	r.res.Rows += int64(b.n)
	r.res.Done += int64(b.n)
	r.res.Changed += st.changed
	r.res.Skipped += st.skipped
	r.res.Lost += st.lost
	return b.n, nil
}

// rowBatch is what a SELECT of a batch returned.
type rowBatch struct {
	n    int
	keys [][]string // per row: the primary key as text
	vals [][][]byte // per row: per column
}

func (r *runner) read(rows pgx.Rows) (*rowBatch, error) {
	defer rows.Close()
	nk, nc := len(r.o.Rel.PK), len(r.o.Columns)
	b := &rowBatch{}
	for rows.Next() {
		key := make([]string, nk)
		vals := make([][]byte, nc)
		dest := make([]any, 0, nk+nc)
		for i := range key {
			dest = append(dest, &key[i])
		}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read a batch of %s: %w", r.o.Rel.String(), err)
		}
		b.keys = append(b.keys, key)
		b.vals = append(b.vals, vals)
		b.n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read a batch of %s: %w", r.o.Rel.String(), err)
	}
	return b, nil
}

type batchStats struct{ changed, skipped, lost int64 }

// apply transforms the values of b and writes the changed ones in one
// UPDATE inside tx.
func (r *runner) apply(ctx context.Context, tx pgx.Tx, b *rowBatch) (batchStats, error) {
	var st batchStats
	nk, nc := len(r.o.Rel.PK), len(r.o.Columns)
	keys := make([][]string, nk)
	olds := make([][][]byte, nc)
	news := make([][][]byte, nc)
	rowNew := make([][]byte, nc)
	rows := 0
	for i := 0; i < b.n; i++ {
		changed := false
		for j, col := range r.o.Columns {
			v := b.vals[i][j]
			rowNew[j] = nil
			if v == nil {
				continue // NULL stays NULL
			}
			nv, err := r.transform(&col, v)
			if err != nil {
				return st, &ValueError{Table: r.o.Rel.String(), Column: col.Name, Key: b.keys[i], Err: err}
			}
			if nv == nil {
				st.skipped++
				continue
			}
			rowNew[j] = nv
			changed = true
			st.changed++
		}
		if !changed {
			continue
		}
		rows++
		for k := range nk {
			keys[k] = append(keys[k], b.keys[i][k])
		}
		for j := range nc {
			if rowNew[j] == nil {
				olds[j] = append(olds[j], nil)
				news[j] = append(news[j], nil)
			} else {
				olds[j] = append(olds[j], b.vals[i][j])
				news[j] = append(news[j], rowNew[j])
			}
		}
	}
	if rows == 0 {
		return st, nil
	}
	args := make([]any, 0, nk+2*nc)
	for _, k := range keys {
		args = append(args, k)
	}
	for j := range nc {
		args = append(args, olds[j], news[j])
	}
	var updated int64
	if err := tx.QueryRow(ctx, r.update, args...).Scan(&updated, &st.lost); err != nil {
		return st, fmt.Errorf("write a batch of %s: %w", r.o.Rel.String(), err)
	}
	st.changed -= st.lost
	return st, nil
}

// transform returns the value to store in place of v, or nil to leave v
// as it is. v is not NULL.
func (r *runner) transform(col *Column, v []byte) ([]byte, error) {
	switch r.o.Op {
	case OpEncrypt:
		if crypto.IsCiphertext(v) {
			// Already encrypted (by an earlier run or a write through
			// pgcloak). Decrypting proves it: a plaintext that merely
			// starts like a pgcloak value is not skipped silently.
			if _, err := col.Keyring.Decrypt(r.canon[:0], v, col.ID); err != nil {
				return nil, fmt.Errorf("value starts with the pgcloak header but does not decrypt: %w", err)
			}
			return nil, nil
		}
		format := int16(0)
		if col.Type.Name() == "bytea" {
			format = 1 // the stored bytes are the value itself
		}
		canon, err := col.Type.Canonical(r.canon[:0], format, v, nil)
		if err != nil {
			return nil, err
		}
		r.canon = canon
		return col.Keyring.Encrypt(nil, canon, col.ID, col.Mode)
	case OpRotate:
		if !crypto.IsCiphertext(v) {
			return nil, ErrNotEncrypted
		}
		h, err := crypto.ParseHeader(v)
		if err != nil {
			return nil, err
		}
		active, ok := col.Keyring.Active()
		if !ok {
			return nil, fmt.Errorf("keyring %s has no key loaded", col.Keyring.Name())
		}
		if h.KeyVersion >= active && h.Mode == col.Mode {
			return nil, nil
		}
		plain, err := col.Keyring.Decrypt(r.canon[:0], v, col.ID)
		if err != nil {
			return nil, err
		}
		r.canon = plain
		return col.Keyring.Encrypt(nil, plain, col.ID, col.Mode)
	case OpDecrypt:
		if !crypto.IsCiphertext(v) {
			return nil, nil // plaintext already
		}
		plain, err := col.Keyring.Decrypt(nil, v, col.ID)
		if err != nil {
			return nil, err
		}
		if plain == nil {
			plain = []byte{} // an empty value, not NULL
		}
		return plain, nil
	}
	return nil, fmt.Errorf("unknown operation %q", r.o.Op)
}

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
