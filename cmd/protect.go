package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/migrate"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

func protectCommand(g *globals) *cobra.Command {
	var apply bool
	var table string
	c := &cobra.Command{
		Use:   "protect [--apply] [--table T]",
		Short: "Add the database-side backstop (a CHECK constraint) to every protected column",
		Long: `Every protected column carries a CHECK constraint, pgcloak_<column>_encrypted, that makes
PostgreSQL itself refuse any value that is not pgcloak ciphertext: on every path, including
functions, triggers, dynamic SQL, COPY and sessions that do not pass through pgcloak. serve
does not relay sessions to a database whose protected columns lack it.

Without --apply, protect prints a SQL script that adds the missing backstops (idempotent: run
it with psql -f as many times as you like). With --apply it runs it through admin_dsn: each
constraint is added NOT VALID (an ACCESS EXCLUSIVE lock for an instant, with a short
lock_timeout, retried) and then validated while reads and writes go on. A column that still
holds plaintext is not given the constraint: encrypt it first (pgcloak migrate encrypt).
Columns with state: migrating are left alone (migrate encrypt adds theirs at the end).

Tables created through pgcloak get their backstops in the CREATE TABLE (or ALTER TABLE …
ADD COLUMN) itself; protect is for tables made around pgcloak.

Exit status 0 when every protected column (state: encrypted) has its backstop (after
--apply), 1 otherwise, 2 for a config file with mistakes.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			rules, err := catalog.Rules(cfg)
			if err != nil {
				return err
			}
			if table != "" {
				var keep []*catalog.Rule
				for _, r := range rules {
					if r.ConfigTable == table || r.Schema+"."+r.Table == table || r.Table == table {
						keep = append(keep, r)
					}
				}
				if len(keep) == 0 {
					return fmt.Errorf("--table %s is not a protected table of the config", table)
				}
				rules = keep
			}
			ctx, cancel := context.WithTimeout(c.Context(), checkTimeout)
			defer cancel()
			conn, err := migrate.Connect(ctx, cfg.AdminDSN)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			p := &protector{conn: conn, loader: catalog.NewLoader(rules), out: c.OutOrStdout()}
			if apply {
				return p.apply(ctx)
			}
			return p.print(ctx)
		},
	}
	c.Flags().BoolVar(&apply, "apply", false, "run the statements instead of printing them")
	c.Flags().StringVar(&table, "table", "", "only this protected table (schema.table, or the name alone)")
	return c
}

// RunProtect runs `pgcloak protect ARGS…` in process and returns the exit
// code (see protectCommand).
func RunProtect(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(protectCommand, "protect", args, stdout, stderr)
}

// protector adds backstops.
type protector struct {
	conn   *pgx.Conn
	loader *catalog.Loader
	out    io.Writer
}

// errUnprotected is protect's result when some column is left without its
// backstop.
var errUnprotected = errors.New("some protected columns have no backstop (see above)")

// print writes the script that adds what is missing.
func (p *protector) print(ctx context.Context) error {
	snap, err := p.loader.Load(ctx, p.conn)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("-- pgcloak protect: the CHECK constraint that makes PostgreSQL refuse anything but pgcloak\n")
	b.WriteString("-- ciphertext in each protected column. Idempotent: run it with psql -f (as the tables' owner).\n")
	todo, blocked := 0, 0
	for _, r := range snap.Rules {
		switch {
		case r.Migrating:
			fmt.Fprintf(&b, "\n-- %s: state: migrating; pgcloak migrate encrypt adds its backstop when every value is encrypted\n", r)
		case !snap.Placed(r) && tableMissing(snap, r):
			fmt.Fprintf(&b, "\n-- %s: %s\n", r, problemOf(snap, r))
		case !snap.Placed(r):
			blocked++
			fmt.Fprintf(&b, "\n-- %s: cannot be protected yet: %s\n", r, problemOf(snap, r))
		case snap.Backstop(r).OK() && snap.Backstop(r).Valid:
			fmt.Fprintf(&b, "\n-- %s: backstop %s in place and validated\n", r, catalog.BackstopName(r.Name))
		default:
			todo++
			def, err := catalog.BackstopDefFor(ctx, p.conn, r.Name, r.Subject != "")
			if err != nil {
				return err
			}
			ident := pgx.Identifier{r.Schema, r.Table}.Sanitize()
			name := catalog.BackstopName(r.Name)
			fmt.Fprintf(&b, "\n-- %s\n", r)
			fmt.Fprintf(&b, "DO $pgcloak$ BEGIN\n")
			fmt.Fprintf(&b, "  IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = %s::regclass AND conname = %s\n", sqlString(ident), sqlString(name))
			fmt.Fprintf(&b, "            AND pg_catalog.pg_get_constraintdef(oid) NOT IN (%s, %s)) THEN\n", sqlString(def), sqlString(def+" NOT VALID"))
			fmt.Fprintf(&b, "    ALTER TABLE %s DROP CONSTRAINT %s; -- not the check pgcloak adds\n", ident, pgx.Identifier{name}.Sanitize())
			fmt.Fprintf(&b, "  END IF;\n")
			fmt.Fprintf(&b, "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = %s::regclass AND conname = %s) THEN\n", sqlString(ident), sqlString(name))
			fmt.Fprintf(&b, "    %s;\n", r.BackstopSQL())
			fmt.Fprintf(&b, "  END IF;\n")
			fmt.Fprintf(&b, "END $pgcloak$;\n")
			fmt.Fprintf(&b, "%s;\n", catalog.ValidateSQL(r.Schema, r.Table, r.Name))
		}
	}
	switch {
	case todo == 0 && blocked == 0:
		b.WriteString("\n-- every protected column has its backstop: nothing to do\n")
	case todo > 0:
		fmt.Fprintf(&b, "\n-- %d backstop(s) to add; or run: pgcloak protect --config FILE --apply\n", todo)
	}
	if _, err := io.WriteString(p.out, b.String()); err != nil {
		return err
	}
	if todo > 0 || blocked > 0 {
		return errUnprotected
	}
	return nil
}

// apply adds what is missing and reports each column's state.
func (p *protector) apply(ctx context.Context) error {
	snap, err := p.loader.Load(ctx, p.conn)
	if err != nil {
		return err
	}
	failed := false
	for _, cols := range byTable(snap.Rules) {
		r0 := cols[0]
		var names []string
		for _, r := range cols {
			if r.Migrating || !snap.Placed(r) {
				continue
			}
			if b := snap.Backstop(r); b.Exists && !b.Matches {
				sql := fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", pgx.Identifier{r.Schema, r.Table}.Sanitize(), pgx.Identifier{catalog.BackstopName(r.Name)}.Sanitize())
				if _, err := p.conn.Exec(ctx, sql); err != nil {
					return fmt.Errorf("%s: %w", r, err)
				}
				fmt.Fprintf(p.out, "%s: dropped constraint %s, which was not the check pgcloak adds\n", r, catalog.BackstopName(r.Name))
			}
			names = append(names, r.Name)
		}
		if len(names) == 0 {
			continue
		}
		rel, err := migrate.Inspect(ctx, p.conn, r0.Schema, r0.Table)
		if err != nil {
			return err
		}
		if err := migrate.AddBackstopsFor(ctx, p.conn, rel, names, r0.Subject != ""); err != nil {
			var pe *migrate.PlaintextError
			if !errors.As(err, &pe) {
				return err
			}
			fmt.Fprintf(p.out, "%s.%s: %v\n", r0.TableString(), catalog.Display(pe.Column), err)
			failed = true
		}
	}
	after, err := p.loader.Load(ctx, p.conn)
	if err != nil {
		return err
	}
	for _, r := range after.Rules {
		switch b := after.Backstop(r); {
		case r.Migrating:
			fmt.Fprintf(p.out, "%s: state: migrating (pgcloak migrate encrypt adds its backstop)\n", r)
		case !after.Placed(r) && tableMissing(after, r):
			fmt.Fprintf(p.out, "%s: %s\n", r, problemOf(after, r))
		case !after.Placed(r):
			fmt.Fprintf(p.out, "%s: not protected: %s\n", r, problemOf(after, r))
			failed = true
		case b.OK() && b.Valid:
			fmt.Fprintf(p.out, "%s: backstop %s in place and validated\n", r, catalog.BackstopName(r.Name))
		default:
			failed = true
		}
	}
	if failed {
		return errUnprotected
	}
	return nil
}

// problemOf is the problem that keeps r's column from being protected.
func problemOf(s *catalog.Snapshot, r *catalog.Rule) string {
	for _, pr := range s.Problems {
		if pr.Rule == r {
			return pr.Message + "; " + pr.Fix
		}
	}
	return "unknown"
}

// tableMissing reports whether r's table or column is not in the database
// yet: its rule applies once it is created, nothing to protect before.
func tableMissing(s *catalog.Snapshot, r *catalog.Rule) bool {
	for _, pr := range s.Problems {
		if pr.Rule == r && !pr.Blocking && (pr.Kind == catalog.KindTableMissing || pr.Kind == catalog.KindColumnMissing) {
			return true
		}
	}
	return false
}

// byTable groups rules by table, in order.
func byTable(rules []*catalog.Rule) [][]*catalog.Rule {
	var out [][]*catalog.Rule
	for _, r := range rules {
		if n := len(out); n > 0 && out[n-1][0].Schema == r.Schema && out[n-1][0].Table == r.Table {
			out[n-1] = append(out[n-1], r)
			continue
		}
		out = append(out, []*catalog.Rule{r})
	}
	return out
}

// sqlString is s as a SQL string literal (standard_conforming_strings on).
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
