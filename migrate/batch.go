package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgcloak/pgcloak/crypto"
)

// One batch of a run: the SQL that reads and writes it, and the transform of its values, in one transaction.

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
