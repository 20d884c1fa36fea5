package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/migrate"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// checkTimeout bounds one pgcloak check.
const checkTimeout = 2 * time.Minute

// plaintextScanTimeout bounds the look for plaintext in a column that has
// no valid backstop (it may read the whole table).
const plaintextScanTimeout = 10 * time.Second

// Finding is one thing pgcloak check reports.
type Finding struct {
	// Level is "error" (the setup is not sound: exit status 1) or "warning".
	Level string `json:"level"`
	// Kind names the check, stable for scripts: see checkCommand.
	Kind string `json:"kind"`
	// Target is what it is about: schema.table.column, keys.NAME, kms or
	// admin_dsn.
	Target  string `json:"target"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Finding levels.
const (
	levelError   = "error"
	levelWarning = "warning"
)

func checkCommand(g *globals) *cobra.Command {
	var asJSON, showAccess bool
	var facts access.Session
	c := &cobra.Command{
		Use:   "check [--json] [--access | --role ROLE [--application-name NAME] [--client-cert CN]]",
		Short: "Check the config against the database, the keys and Vault; one line per problem, with its fix",
		Long: `Checks, for every protected column of the config, what serve and the fail-closed promise rely
on, and prints one line per problem with the fix. Exit status 1 when there is an error, 0 when
there are only warnings or nothing, 2 for a config file with mistakes.

kind                  level    what
kms_unreachable       error    Vault cannot be reached or refuses the login (or the local key file)
database_unreachable  error    admin_dsn cannot connect (the database checks are skipped)
keys_table_missing    error    pgcloak.keys does not exist
keyring_missing       error    a keyring of the config has no version in pgcloak.keys
keyring_unwrap        error    a keyring's data keys cannot be unwrapped as serve would
rule_type             error    a column's logical type is not valid
table_missing         error    a protected table is not in the database
column_missing        error    a protected column is not in its table
column_type           error    a protected column is not bytea (plaintext type: pgcloak migrate plan)
plaintext_values      error    a column with state: encrypted holds values without the pgcloak header
backstop_missing      error    the CHECK constraint pgcloak_<column>_encrypted is missing (state: encrypted)
backstop_differs      error    that constraint is not the one this pgcloak adds
backstop_not_valid    warning  that constraint is NOT VALID: older rows are not checked
state_migrating       warning  state: migrating: reads accept plaintext
index_missing         warning  a deterministic column has no index for equality searches
index_useless         warning  an index on a randomized column cannot serve a search
migration_unfinished  warning  a pgcloak migrate run stopped before its end
nonstandard_strings   warning  standard_conforming_strings is off for some sessions (server, database
                               or role default): their statements on protected tables that hold a
                               backslash are refused

With --access (every role the access rules name, and any other role) or --role ROLE, check
prints instead what each role may do with each protected column, as serve decides it: the read
outcome (plaintext, masked with its format, ciphertext, deny), the type the client sees, write,
search, and the rule that decided. --application-name and --client-cert give the session facts
that rules may be narrowed by. It reads only the config.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, log, err := g.setup(c)
			if err != nil {
				return err
			}
			if showAccess || facts.Role != "" {
				return printAccess(c.OutOrStdout(), cfg, facts, asJSON)
			}
			ctx, cancel := context.WithTimeout(c.Context(), checkTimeout)
			defer cancel()
			ck := &checker{cfg: cfg, log: log}
			ck.run(ctx)
			return ck.print(c.OutOrStdout(), asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	c.Flags().BoolVar(&showAccess, "access", false, "print every role's access to each protected column")
	c.Flags().StringVar(&facts.Role, "role", "", "print this role's access to each protected column")
	c.Flags().StringVar(&facts.ApplicationName, "application-name", "", "with --role: the session's application_name")
	c.Flags().StringVar(&facts.CertCN, "client-cert", "", "with --role: the CN of the session's client certificate")
	return c
}

// RunCheck runs `pgcloak check ARGS…` in process and returns the exit code:
// 0 (no error), 1 (errors found, or check failed), 2 (config mistakes).
func RunCheck(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(checkCommand, "check", args, stdout, stderr)
}

// checker collects the findings of one check.
type checker struct {
	cfg      *config.Config
	log      *zap.Logger
	findings []Finding
	columns  int
}

func (ck *checker) add(level, kind, target, msg, fix string) {
	ck.findings = append(ck.findings, Finding{Level: level, Kind: kind, Target: target, Message: msg, Fix: fix})
}

func (ck *checker) run(ctx context.Context) {
	kmsOK := ck.checkKMS(ctx)
	conn, err := migrate.Connect(ctx, ck.cfg.AdminDSN)
	if err != nil {
		ck.add(levelError, "database_unreachable", "admin_dsn", fmt.Sprintf("cannot connect: %v; the database checks were skipped", err),
			"check admin_dsn (host, port, user, dbname) and that the password is in PGPASSWORD or ~/.pgpass")
		return
	}
	defer conn.Close(context.Background())
	ck.checkKeys(ctx, kmsOK)
	for _, t := range sortedTables(ck.cfg) {
		ck.checkTable(ctx, conn, t)
	}
	ck.checkMigrations(ctx, conn)
	ck.checkStringSyntax(ctx, conn)
}

// checkStringSyntax looks for standard_conforming_strings turned off for
// sessions in the protected database: pgcloak's parser reads literals with
// it on, so such sessions get their backslash-holding statements on
// protected tables refused (0A000).
func (ck *checker) checkStringSyntax(ctx context.Context, conn *pgx.Conn) {
	const fix = "turn it back on (the default since PostgreSQL 9.1), or have the applications pass values as parameters"
	var setting, source string
	// Database and role defaults are reported one by one below; this is the
	// server-wide value (configuration file, command line).
	if err := conn.QueryRow(ctx, `SELECT setting, source FROM pg_settings WHERE name = 'standard_conforming_strings'`).Scan(&setting, &source); err == nil &&
		setting != "on" && source != "database" && source != "user" && source != "database user" {
		ck.add(levelWarning, "nonstandard_strings", "standard_conforming_strings",
			fmt.Sprintf("standard_conforming_strings is %s for admin_dsn's session (source: %s); sessions like it get statements on protected tables that hold a backslash refused", setting, source), fix)
	}
	rows, err := conn.Query(ctx, `
		SELECT coalesce(r.rolname, ''), coalesce(d.datname, '')
		FROM pg_db_role_setting s
		LEFT JOIN pg_roles r ON r.oid = s.setrole
		LEFT JOIN pg_database d ON d.oid = s.setdatabase
		CROSS JOIN unnest(s.setconfig) AS c(kv)
		WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
		  AND lower(split_part(c.kv, '=', 1)) = 'standard_conforming_strings'
		  AND lower(split_part(c.kv, '=', 2)) NOT IN ('on', 'true', 'yes', '1')
		ORDER BY 1, 2`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var role, db string
		if rows.Scan(&role, &db) != nil {
			return
		}
		who, alter := "every session", ""
		switch {
		case role != "" && db != "":
			who, alter = fmt.Sprintf("role %s in database %s", role, db), fmt.Sprintf("ALTER ROLE %s IN DATABASE %s RESET standard_conforming_strings", pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize())
		case role != "":
			who, alter = "role "+role, fmt.Sprintf("ALTER ROLE %s RESET standard_conforming_strings", pgx.Identifier{role}.Sanitize())
		case db != "":
			who, alter = "database "+db, fmt.Sprintf("ALTER DATABASE %s RESET standard_conforming_strings", pgx.Identifier{db}.Sanitize())
		}
		ck.add(levelWarning, "nonstandard_strings", "standard_conforming_strings",
			fmt.Sprintf("standard_conforming_strings defaults to off for %s: its statements on protected tables that hold a backslash are refused", who),
			alter+"; "+fix)
	}
}

// checkKMS logs in to Vault (or opens the local key file) as serve does.
func (ck *checker) checkKMS(ctx context.Context) bool {
	if len(ck.cfg.Keys) == 0 {
		return false
	}
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kms, err := openKMS(kctx, ck.cfg, ck.log)
	if err != nil {
		fix := "check kms.vault.address (or VAULT_ADDR), that Vault is unsealed (vault status) and the login (token, AppRole or Kubernetes role)"
		if ck.cfg.KMS != nil && ck.cfg.KMS.Local != nil {
			fix = "check kms.local.key_file; pgcloak keys init creates it"
		}
		ck.add(levelError, "kms_unreachable", "kms", fmt.Sprintf("cannot reach the KMS: %v", err), fix)
		return false
	}
	kms.close()
	return true
}

// checkKeys checks that every keyring has versions in pgcloak.keys and that
// serve can load them, one keyring at a time through OpenKeyrings.
func (ck *checker) checkKeys(ctx context.Context, kmsOK bool) {
	if len(ck.cfg.Keys) == 0 {
		return
	}
	store, err := keystore.OpenStore(ctx, ck.cfg.AdminDSN)
	if err != nil {
		ck.add(levelError, "database_unreachable", "admin_dsn", err.Error(), "check admin_dsn")
		return
	}
	defer store.Close()
	recs, err := store.Records(ctx)
	if errors.Is(err, keystore.ErrNotInitialized) {
		ck.add(levelError, "keys_table_missing", "pgcloak.keys", "the table of wrapped data keys does not exist; no key can be loaded",
			"pgcloak keys init --config FILE")
		return
	}
	if err != nil {
		ck.add(levelError, "keys_table_missing", "pgcloak.keys", err.Error(), "check that admin_dsn's user may read pgcloak.keys")
		return
	}
	have := map[string]int{}
	for _, r := range recs {
		have[r.Keyring]++
	}
	for _, name := range sortedKeys(ck.cfg.Keys) {
		target := "keys." + name
		if have[name] == 0 {
			ck.add(levelError, "keyring_missing", target, "keyring has no data key in pgcloak.keys: serve cannot start",
				"pgcloak keys init --config FILE (creates version 1)")
			continue
		}
		if !kmsOK {
			continue // said once, as kms_unreachable
		}
		one := *ck.cfg
		one.Keys = map[string]config.Key{name: ck.cfg.Keys[name]}
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, closeKeys, err := OpenKeyrings(kctx, &one, zap.NewNop())
		cancel()
		if err != nil {
			ck.add(levelError, "keyring_unwrap", target, fmt.Sprintf("serve cannot load its data keys: %v", err),
				"check transit_key and that the Vault login may use transit/decrypt with it; pgcloak keys list shows the KEK of each version")
			continue
		}
		closeKeys()
	}
}

func (ck *checker) checkTable(ctx context.Context, conn *pgx.Conn, key string) {
	schema, table, err := config.SplitTable(key)
	if err != nil {
		return // config.Load refuses such a file
	}
	ident := migrate.Display(schema) + "." + migrate.Display(table)
	rel, err := migrate.Inspect(ctx, conn, schema, table)
	if errors.Is(err, migrate.ErrNoTable) {
		ck.add(levelError, "table_missing", ident, fmt.Sprintf("table is not in the database %s", conn.Config().Database),
			fmt.Sprintf("create it, or fix the name tables.%s in the config", key))
		return
	}
	if err != nil {
		ck.add(levelError, "database_unreachable", ident, err.Error(), "check admin_dsn's privileges on the catalog")
		return
	}
	rules := ck.cfg.Tables[key]
	for _, name := range sortedNames(rules) {
		ck.columns++
		ck.checkColumn(ctx, conn, rel, key, name, rules[name])
	}
}

func (ck *checker) checkColumn(ctx context.Context, conn *pgx.Conn, rel *migrate.Relation, key, name string, rule config.Column) {
	target := rel.String() + "." + migrate.Display(name)
	if _, err := values.Lookup(rule.Type); err != nil {
		ck.add(levelError, "rule_type", target, err.Error(), fmt.Sprintf("fix tables.%s.%s.type", key, name))
	}
	a := rel.Attr(name)
	if a == nil {
		ck.add(levelError, "column_missing", target, "column is not in the table",
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s bytea; or fix the name tables.%s.%s in the config", rel.Ident(), pgx.Identifier{name}.Sanitize(), key, name))
		return
	}
	if !a.IsBytea() {
		ck.add(levelError, "column_type", target, fmt.Sprintf("column is %s, not bytea: its values are plaintext and serve refuses to start", a.Type),
			fmt.Sprintf("pgcloak migrate plan --table %s --column %s (prints the DDL that converts it in place)", key, name))
		return
	}
	migrating := rule.State == config.StateMigrating
	_, subject := ck.cfg.Subjects[key]
	con := rel.Constraint(catalog.BackstopName(name))
	backstopOK := false
	switch {
	case con == nil && !migrating:
		ck.add(levelError, "backstop_missing", target, fmt.Sprintf("no CHECK constraint %s: a write around pgcloak can store plaintext", catalog.BackstopName(name)),
			fmt.Sprintf("pgcloak migrate encrypt --table %s --column %s (adds it), or: %s; ALTER TABLE %s VALIDATE CONSTRAINT %s;",
				key, name, catalog.BackstopSQLFor(rel.Schema, rel.Name, name, subject), rel.Ident(), pgx.Identifier{catalog.BackstopName(name)}.Sanitize()))
	case con != nil:
		want, err := catalog.BackstopDefFor(ctx, conn, name, subject)
		have := strings.TrimSuffix(con.Def, " NOT VALID")
		switch {
		case err != nil:
			ck.log.Debug("cannot compare the backstop", zap.Error(err))
		case have != want:
			ck.add(levelError, "backstop_differs", target, fmt.Sprintf("constraint %s is %s, not the check this pgcloak adds", con.Name, con.Def),
				fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s; then pgcloak migrate encrypt --table %s --column %s adds the right one",
					rel.Ident(), pgx.Identifier{con.Name}.Sanitize(), key, name))
			con = nil
		}
		if con != nil && !con.Validated {
			ck.add(levelWarning, "backstop_not_valid", target, fmt.Sprintf("constraint %s is NOT VALID: rows written before it were not checked", con.Name),
				fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s;", rel.Ident(), pgx.Identifier{con.Name}.Sanitize()))
		}
		backstopOK = con != nil && con.Validated
	}
	if migrating {
		msg := "state: migrating: reads accept values without the pgcloak header as plaintext"
		fix := fmt.Sprintf("pgcloak migrate encrypt --table %s, then set state: encrypted and restart pgcloak", key)
		if backstopOK {
			msg += "; every value is encrypted (the backstop is validated)"
			fix = "set state: encrypted (or remove state:) and restart pgcloak"
		}
		ck.add(levelWarning, "state_migrating", target, msg, fix)
	} else if !backstopOK {
		ck.checkPlaintext(ctx, conn, rel, key, name, target, subject)
	}
	ck.checkIndexes(rel, a, rule, target)
}

// checkPlaintext looks for values without the pgcloak header in a column
// whose backstop does not guarantee there are none.
func (ck *checker) checkPlaintext(ctx context.Context, conn *pgx.Conn, rel *migrate.Relation, key, name, target string, subject bool) {
	qctx, cancel := context.WithTimeout(ctx, plaintextScanTimeout)
	defer cancel()
	var n int64
	err := conn.QueryRow(qctx, fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM %s WHERE NOT (%s) LIMIT 1000) s",
		rel.Ident(), catalog.CheckExpr(name, subject))).Scan(&n)
	if err != nil {
		var pe *pgconn.PgError
		if qctx.Err() != nil || errors.As(err, &pe) && pe.Code == "57014" {
			ck.log.Info("plaintext scan skipped: the table is too large to scan here", zap.String("column", target))
			return
		}
		ck.log.Warn("plaintext scan failed", zap.String("column", target), zap.Error(err))
		return
	}
	if n == 0 {
		return
	}
	count := fmt.Sprint(n)
	if n == 1000 {
		count = "at least 1000"
	}
	ck.add(levelError, "plaintext_values", target, fmt.Sprintf("%s value(s) have no pgcloak header: reads of those rows fail (state: encrypted)", count),
		fmt.Sprintf("set state: migrating, restart pgcloak, then pgcloak migrate encrypt --table %s --column %s", key, name))
}

// checkIndexes wants an index led by each deterministic column, and none on
// randomized ciphertext, which no search can use.
func (ck *checker) checkIndexes(rel *migrate.Relation, a *migrate.Attr, rule config.Column, target string) {
	if rule.Mode == config.ModeDeterministic {
		for _, ix := range rel.Indexes {
			if !ix.Expression && len(ix.Keys) > 0 && ix.Keys[0] == a.Num {
				return
			}
		}
		ck.add(levelWarning, "index_missing", target, "deterministic column has no index: equality searches and joins on it read the whole table",
			fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s);", rel.Ident(), pgx.Identifier{a.Name}.Sanitize()))
		return
	}
	for _, ix := range rel.Indexes {
		if ix.Primary || ix.Expression || !slices.Contains(ix.Keys, a.Num) {
			continue
		}
		msg := fmt.Sprintf("index %s is on randomized ciphertext: no search can use it", ix.Name)
		if ix.Unique {
			msg += ", and it does not make the values unique (equal values encrypt differently)"
		}
		ck.add(levelWarning, "index_useless", target, msg,
			fmt.Sprintf("DROP INDEX CONCURRENTLY %s; (or use mode: deterministic if the column is searched)", pgx.Identifier{rel.Schema, ix.Name}.Sanitize()))
	}
}

// checkMigrations reports migrate runs that stopped before their end.
func (ck *checker) checkMigrations(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT table_name, columns, operation, rows_done, updated_at FROM pgcloak.migrations
		WHERE finished_at IS NULL ORDER BY table_name, operation`)
	if err != nil {
		return // no pgcloak.migrations: nothing was migrated
	}
	defer rows.Close()
	for rows.Next() {
		var table, cols, op string
		var done int64
		var at time.Time
		if err := rows.Scan(&table, &cols, &op, &done, &at); err != nil {
			return
		}
		ck.add(levelWarning, "migration_unfinished", table, fmt.Sprintf("pgcloak migrate %s of %s stopped after %d rows (last progress %s)",
			op, cols, done, at.UTC().Format(time.RFC3339)),
			fmt.Sprintf("run pgcloak migrate %s --table %s --column %s again: it resumes", op, table, cols))
	}
}

func (ck *checker) print(w io.Writer, asJSON bool) error {
	var errs, warns int
	for _, f := range ck.findings {
		if f.Level == levelError {
			errs++
		} else {
			warns++
		}
	}
	if asJSON {
		out := struct {
			Findings []Finding `json:"findings"`
			Errors   int       `json:"errors"`
			Warnings int       `json:"warnings"`
			Tables   int       `json:"tables"`
			Columns  int       `json:"columns"`
			Keyrings int       `json:"keyrings"`
		}{ck.findings, errs, warns, len(ck.cfg.Tables), ck.columns, len(ck.cfg.Keys)}
		if out.Findings == nil {
			out.Findings = []Finding{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		for _, f := range ck.findings {
			line := fmt.Sprintf("%-7s %s: %s [%s]", f.Level, f.Target, f.Message, f.Kind)
			if f.Fix != "" {
				line += "\n        fix: " + f.Fix
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "%d errors, %d warnings (%d tables, %d columns, %d keyrings checked)\n", errs, warns, len(ck.cfg.Tables), ck.columns, len(ck.cfg.Keys))
	}
	if errs > 0 {
		return fmt.Errorf("check found %d errors", errs)
	}
	return nil
}

func sortedTables(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Tables))
	for n := range cfg.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
