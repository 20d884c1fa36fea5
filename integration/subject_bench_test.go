//go:build unix

package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/internal/cputime"
)

// BenchmarkSubjectKeys: point reads and inserts through pgcloak (pgx,
// prepared statements, one connection) of a keyring-keyed column and of
// subject-keyed columns whose subject's key is cached (warm), not cached
// (cold: one database read of pgcloak.subject_keys), or new (the first
// write makes the key: a read and an insert), side by side in one run. The
// subject cache holds 100 keys; the cold statements go round 4000
// subjects. cpu-ns/op is the CPU of this process (pgx and pgcloak, not
// PostgreSQL) per statement. It starts its own PostgreSQL and Vault.
//
//	go test ./integration -run '^$' -bench SubjectKeys -benchtime 2000x
func BenchmarkSubjectKeys(b *testing.B) {
	pg := harness.StartPostgres(b, harness.PostgresOptions{})
	e := newSubjEnv(b, subjEnvOptions{pg: pg, vault: harness.StartVault(b, harness.VaultOptions{}), extra: "subject_cache: 100"})
	p := e.start()
	c := connect(b, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, p.addr, e.db))
	ctx := context.Background()
	const subjects, warm = 4000, 50
	var cust, notes [][]any
	for id := 1; id <= subjects; id++ {
		cust = append(cust, []any{int64(id), fmt.Sprintf("c%d@example.com", id)})
		notes = append(notes, []any{id, fmt.Sprintf("note %d of a customer", id)})
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"id", "email"}, pgx.CopyFromRows(cust)); err != nil {
		b.Fatal(err)
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"notes"}, []string{"id", "body"}, pgx.CopyFromRows(notes)); err != nil {
		b.Fatal(err)
	}
	next := int64(subjects) // new ids
	for _, bc := range []struct {
		name string
		run  func(i int) error
	}{
		{"read/keyring", func(i int) error {
			var s string
			return c.QueryRow(ctx, `SELECT body FROM notes WHERE id = $1`, 1+i%subjects).Scan(&s)
		}},
		{"read/subject-warm", func(i int) error {
			var s string
			return c.QueryRow(ctx, `SELECT email FROM customers WHERE id = $1`, int64(1+i%warm)).Scan(&s)
		}},
		{"read/subject-cold", func(i int) error {
			var s string
			return c.QueryRow(ctx, `SELECT email FROM customers WHERE id = $1`, int64(1+(i*7919)%subjects)).Scan(&s)
		}},
		{"insert/keyring", func(int) error {
			next++
			_, err := c.Exec(ctx, `INSERT INTO notes (id, body) VALUES ($1, $2)`, next, "a new note")
			return err
		}},
		{"insert/subject-warm", func(i int) error {
			_, err := c.Exec(ctx, `INSERT INTO orders (customer_id, address) VALUES ($1, $2)`, int64(1+i%warm), "1 Warm Rd")
			return err
		}},
		{"insert/subject-cold", func(i int) error {
			_, err := c.Exec(ctx, `INSERT INTO orders (customer_id, address) VALUES ($1, $2)`, int64(1+(i*7919)%subjects), "2 Cold Rd")
			return err
		}},
		{"insert/subject-new", func(int) error {
			next++
			_, err := c.Exec(ctx, `INSERT INTO customers (id, email) VALUES ($1, $2)`, next, "new@example.com")
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := range warm { // the warm subjects are in the cache; the statements are prepared
				if err := bc.run(i); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cputime.Self()
			i := 0
			for b.Loop() {
				if err := bc.run(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(cputime.Self()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
