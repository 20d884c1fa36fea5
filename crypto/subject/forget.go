package subject

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Forgotten is what Forget did.
type Forgotten struct {
	// Had is false when the subject had no key (never written through
	// pgcloak, or forgotten already): nothing changed.
	Had bool
	// Scope is the scope of the table's subjects, and Tables every table
	// whose values of the subject are now erased.
	Scope  string
	Tables []string
}

// Forget destroys the key of subject in table (any name regclass accepts)
// through pgcloak.forget, in the database conn is connected to: the
// subject's values in every table of its scope become unreadable, in every
// pgcloak instance once it hears of it (at once through NOTIFY, at the
// latest within key_refresh). reason is recorded in pgcloak.forgotten.
func Forget(ctx context.Context, conn *pgx.Conn, table, subject, reason string) (Forgotten, error) {
	var f Forgotten
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pgcloak.forget($1::regclass, $2, $3)`, table, subject, reason).Scan(&f.Had); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT o.scope, o.schema_name, o.table_name FROM pgcloak.subject_tables o
			WHERE o.scope = (SELECT t.scope FROM pgcloak.subject_tables t JOIN pg_catalog.pg_class c ON c.relname = t.table_name
				JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schema_name WHERE c.oid = $1::regclass)
			ORDER BY 2, 3`, table)
		if err != nil {
			return err
		}
		for rows.Next() {
			var schema, name string
			if err := rows.Scan(&f.Scope, &schema, &name); err != nil {
				return err
			}
			f.Tables = append(f.Tables, ScopeName(schema, name))
		}
		return rows.Err()
	})
	if err != nil {
		return Forgotten{}, fmt.Errorf("forget: %w", notInitialized(err))
	}
	return f, nil
}
