package catalog

import (
	"context"
	"fmt"
	"hash/fnv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto"
)

// The backstop of a protected column is the CHECK constraint that makes
// PostgreSQL itself refuse every value that is not pgcloak ciphertext
// (crypto.CheckExpr: the header with a known format version and mode, and at
// least the length of an empty value). It holds on every path a value can
// take into the table: pgcloak's, COPY, functions, triggers, dynamic SQL,
// and sessions that never pass through pgcloak. pgcloak's own refusals are
// the first line; this is the one that does not depend on understanding the
// SQL.

// maxIdentLen is PostgreSQL's NAMEDATALEN-1.
const maxIdentLen = 63

// BackstopName is the name of the backstop of column:
// pgcloak_<column>_encrypted. A name longer than PostgreSQL's 63 bytes keeps
// the start of the column name and a hash of all of it, so two long names
// never share a constraint.
func BackstopName(column string) string {
	const prefix, suffix = "pgcloak_", "_encrypted"
	name := prefix + column + suffix
	if len(name) <= maxIdentLen {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(column))
	keep := maxIdentLen - len(prefix) - len(suffix) - 9 // "_" and 8 hex digits
	for keep > 0 && !utf8.RuneStart(column[keep]) {
		keep--
	}
	return fmt.Sprintf("%s%s_%08x%s", prefix, column[:keep], h.Sum32(), suffix)
}

// CheckExpr is the check of column's backstop: crypto.CheckExpr, or for a
// subject-keyed column crypto.SubjectCheckExpr (only Subject values, so
// that every value of the column is erased with its subject's key).
func CheckExpr(column string, subject bool) string {
	if subject {
		return crypto.SubjectCheckExpr(column)
	}
	return crypto.CheckExpr(column)
}

// BackstopConstraint is the table constraint clause of column's backstop, as
// it is written in CREATE TABLE or ALTER TABLE … ADD.
func BackstopConstraint(column string) string { return BackstopConstraintFor(column, false) }

// BackstopConstraintFor is BackstopConstraint for a column that is
// subject-keyed or not.
func BackstopConstraintFor(column string, subject bool) string {
	return fmt.Sprintf("CONSTRAINT %s CHECK (%s)", pgx.Identifier{BackstopName(column)}.Sanitize(), CheckExpr(column, subject))
}

// BackstopSQL is the statement that adds the backstop of column to
// schema.table without checking the rows already there: the ACCESS
// EXCLUSIVE lock it takes lasts an instant; VALIDATE CONSTRAINT checks the
// old rows later under a lock that lets reads and writes go on.
func BackstopSQL(schema, table, column string) string {
	return BackstopSQLFor(schema, table, column, false)
}

// BackstopSQLFor is BackstopSQL for a column that is subject-keyed or not.
func BackstopSQLFor(schema, table, column string, subject bool) string {
	return fmt.Sprintf("ALTER TABLE %s ADD %s NOT VALID", pgx.Identifier{schema, table}.Sanitize(), BackstopConstraintFor(column, subject))
}

// BackstopSQL is the statement that adds r's backstop (see BackstopSQL).
func (r *Rule) BackstopSQL() string {
	return BackstopSQLFor(r.Schema, r.Table, r.Name, r.Subject != "")
}

// ValidateSQL is the statement that checks the rows already in the table
// against the backstop of column.
func ValidateSQL(schema, table, column string) string {
	return fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{BackstopName(column)}.Sanitize())
}

// BackstopDef returns the backstop of column as pg_get_constraintdef prints
// it on the server conn is connected to, to compare with a constraint found
// in the catalog. It creates the constraint on a temporary table in a
// transaction that it rolls back.
func BackstopDef(ctx context.Context, conn *pgx.Conn, column string) (string, error) {
	return BackstopDefFor(ctx, conn, column, false)
}

// BackstopDefFor is BackstopDef for a column that is subject-keyed or not.
func BackstopDefFor(ctx context.Context, conn *pgx.Conn, column string, subject bool) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // rolled back on purpose
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE pgcloak_backstop_def (%s bytea, CONSTRAINT backstop CHECK (%s)) ON COMMIT DROP",
		pgx.Identifier{column}.Sanitize(), CheckExpr(column, subject))); err != nil {
		return "", err
	}
	var def string
	err = tx.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
		WHERE conrelid = 'pg_temp.pgcloak_backstop_def'::regclass AND conname = 'backstop'`).Scan(&def)
	return def, err
}
