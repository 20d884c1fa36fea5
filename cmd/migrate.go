package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/migrate"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// migrateFlags are the flags of the migrate subcommands.
type migrateFlags struct {
	table          string
	columns        []string
	batch          int
	throttle       time.Duration
	yes            bool
	confirmDecrypt bool
	restoreType    bool
}

func migrateCommand(g *globals) *cobra.Command {
	m := &cobra.Command{
		Use:   "migrate",
		Short: "Encrypt existing plaintext columns online, re-encrypt after a key rotation, or decrypt back",
		Long: `Moves the values of protected columns between plaintext and ciphertext in place, through
admin_dsn (not through pgcloak), while applications keep working through pgcloak.

  1. pgcloak migrate plan --table T      prints the DDL that turns text-typed columns into bytea
  2. set state: migrating, restart pgcloak
  3. pgcloak migrate encrypt --table T   encrypts in batches, resumable; adds the CHECK backstop
  4. set state: encrypted, restart pgcloak

After pgcloak keys rotate, pgcloak migrate rotate --table T re-encrypts the values under older
key versions. pgcloak migrate decrypt --table T --confirm-decrypt is the way back.
docs/lifecycle.md has the procedure and what to clean up afterwards.`,
	}
	table := func(c *cobra.Command, f *migrateFlags) {
		c.Flags().StringVar(&f.table, "table", "", "protected table, as in the config's tables: (schema.table, or the table name alone when unambiguous)")
		c.Flags().StringSliceVar(&f.columns, "column", nil, "protected column(s) of the table (default: every protected column of the table)")
		_ = c.MarkFlagRequired("table")
	}
	batch := func(c *cobra.Command, f *migrateFlags) {
		c.Flags().IntVar(&f.batch, "batch", migrate.DefaultBatch, "rows per transaction")
		c.Flags().DurationVar(&f.throttle, "throttle", 0, "pause after each batch, e.g. 50ms, to leave the database room")
	}

	pf := &migrateFlags{}
	plan := &cobra.Command{
		Use:   "plan --table T [--column C]",
		Short: "Print the DDL that turns text-typed protected columns into bytea in place",
		Long: `Prints a SQL script (run it with psql -f) that changes the protected columns of T from their
plaintext type to bytea in place: each value becomes the UTF-8 bytes of its canonical text form,
which pgcloak reads as plaintext while the columns have state: migrating. The script's comments
say what to set in the config, what the change breaks (defaults, constraints, indexes, views) and
what comes next. It changes nothing itself.`,
		Args: cobra.NoArgs,
		RunE: g.migrateRun(pf, false, migratePlan),
	}
	table(plan, pf)

	ef := &migrateFlags{}
	encrypt := &cobra.Command{
		Use:   "encrypt --table T [--column C] [--batch N] [--throttle DUR] [--yes]",
		Short: "Encrypt the plaintext values of protected columns online, then add the CHECK backstop",
		Long: `Encrypts, batch by batch in primary key order, every value of the columns that has no pgcloak
header, with each keyring's active key. Each batch is one transaction that locks its rows and
replaces a value only if it still holds what was read, so writes that applications make through
pgcloak meanwhile are never lost. Values already encrypted are left alone, so running it again
never encrypts twice. Progress is kept in pgcloak.migrations: a run that was stopped or killed
resumes where it stopped. At the end it adds, per column, the CHECK constraint
pgcloak_<column>_encrypted that refuses any value without the pgcloak header, so that writes
around pgcloak cannot store plaintext. The config should say state: migrating for the columns
while it runs (pgcloak instances then read plaintext and ciphertext); set state: encrypted
afterwards.`,
		Args: cobra.NoArgs,
		RunE: g.migrateRun(ef, true, migrateEncrypt),
	}
	table(encrypt, ef)
	batch(encrypt, ef)
	encrypt.Flags().BoolVar(&ef.yes, "yes", false, "do not ask for confirmation (required without a terminal)")

	rf := &migrateFlags{}
	rotate := &cobra.Command{
		Use:   "rotate --table T [--column C] [--batch N] [--throttle DUR]",
		Short: "Re-encrypt values whose key version is older than the keyring's newest",
		Long: `After pgcloak keys rotate, new values are encrypted with the new key version while stored
values stay under theirs. rotate re-encrypts, online and with the same batches, resumption and
compare-and-set as encrypt, every value whose key version is older than its keyring's newest
(or whose mode is not the configured one, after a change of mode:). Afterwards no value needs
the older versions.`,
		Args: cobra.NoArgs,
		RunE: g.migrateRun(rf, true, migrateRotate),
	}
	table(rotate, rf)
	batch(rotate, rf)

	df := &migrateFlags{}
	decrypt := &cobra.Command{
		Use:   "decrypt --table T [--column C] --confirm-decrypt [--restore-type]",
		Short: "The way back: write the plaintext back and restore the original column type",
		Long: `Drops the CHECK backstop, then writes back, batch by batch, the canonical plaintext of every
value (as UTF-8 bytes: the columns stay bytea, and pgcloak with state: migrating keeps serving
them). It then prints the ALTER TABLE that gives the columns their logical type back; with
--restore-type it runs it, in one transaction under an exclusive lock that first decrypts what
was written through pgcloak meanwhile. After that, pgcloak must not protect the columns any
more: remove their rules and restart pgcloak, or point the applications at PostgreSQL.
The config must say state: migrating for the columns. --confirm-decrypt is required.`,
		Args: cobra.NoArgs,
		RunE: g.migrateRun(df, true, migrateDecrypt),
	}
	table(decrypt, df)
	batch(decrypt, df)
	decrypt.Flags().BoolVar(&df.confirmDecrypt, "confirm-decrypt", false, "confirm that the columns are to hold plaintext again")
	decrypt.Flags().BoolVar(&df.restoreType, "restore-type", false, "also change the columns back to their logical type (needs a short exclusive lock)")

	m.AddCommand(plan, encrypt, rotate, decrypt)
	return m
}

// RunMigrate runs `pgcloak migrate ARGS…` in process and returns the exit
// code: 0, 1 on failure, 2 for a configuration file with mistakes. args are
// what follows "migrate", flags included (--config FILE).
func RunMigrate(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(migrateCommand, "migrate", args, stdout, stderr)
}

// runSubcommand runs one top-level command in process, as Execute would.
func runSubcommand(build func(*globals) *cobra.Command, name string, args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := &cobra.Command{Use: "pgcloak", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("PGCLOAK_CONFIG"), "configuration file (env PGCLOAK_CONFIG)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(build(g))
	root.SetArgs(append([]string{name}, args...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(strings.NewReader(""))
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "pgcloak:", err)
	var ce *config.Error
	if errors.As(err, &ce) {
		return 2
	}
	return 1
}

// migrateEnv is what every migrate subcommand works with.
type migrateEnv struct {
	cfg   *config.Config
	f     *migrateFlags
	in    io.Reader
	out   io.Writer
	errw  io.Writer
	log   *zap.Logger
	conn  *pgx.Conn
	rel   *migrate.Relation
	table string                   // the config's tables: key
	rules map[string]config.Column // the chosen columns' rules
	names []string                 // the chosen columns, sorted
	keys  crypto.Keyrings          // nil for plan
	bar   *migrate.Bar             // the progress bar on a terminal, or nil
}

func (g *globals) migrateRun(f *migrateFlags, needKeys bool, run func(ctx context.Context, e *migrateEnv) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		if c.Flags().Lookup("batch") != nil && f.batch < 1 {
			return fmt.Errorf("--batch must be at least 1, got %d", f.batch)
		}
		cfg, err := g.loadConfig()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		e := &migrateEnv{cfg: cfg, f: f, in: c.InOrStdin(), out: c.OutOrStdout(), errw: c.ErrOrStderr()}
		if e.log, err = cliLogger(g.logLevel, e.errw); err != nil {
			return err
		}
		if err := e.choose(); err != nil {
			return err
		}
		schema, table, _ := config.SplitTable(e.table)
		if e.conn, err = migrate.Connect(ctx, cfg.AdminDSN); err != nil {
			return err
		}
		defer e.conn.Close(context.Background())
		if e.rel, err = migrate.Inspect(ctx, e.conn, schema, table); err != nil {
			if errors.Is(err, migrate.ErrNoTable) {
				return fmt.Errorf("table %s.%s (tables.%s) is not in the database %s; create it or fix the name", migrate.Display(schema), migrate.Display(table), e.table, e.conn.Config().Database)
			}
			return err
		}
		if needKeys {
			keys, closeKeys, err := OpenKeyrings(ctx, cfg, e.log)
			if err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			defer closeKeys()
			e.keys = keys
		}
		return run(ctx, e)
	}
}

// choose finds the table of --table among the config's tables and the
// columns of --column among its rules.
func (e *migrateEnv) choose() error {
	key, err := findTable(e.cfg, e.f.table)
	if err != nil {
		return err
	}
	e.table = key
	if _, ok := e.cfg.Subjects[key]; ok {
		return fmt.Errorf("%s has subjects (subjects.%s): pgcloak migrate does not encrypt under subject keys yet; write its values through pgcloak", key, key)
	}
	all := e.cfg.Tables[key]
	e.rules = map[string]config.Column{}
	if len(e.f.columns) == 0 {
		for n, r := range all {
			e.rules[n] = r
		}
	}
	for _, n := range e.f.columns {
		r, ok := all[n]
		if !ok {
			return fmt.Errorf("%s is not a protected column of tables.%s in the config; protected: %s", n, key, strings.Join(sortedNames(all), ", "))
		}
		e.rules[n] = r
	}
	e.names = sortedNames(e.rules)
	return nil
}

// findTable returns the tables: key that arg names: schema.table as in the
// config (quoted or not), or a table name that only one schema has.
func findTable(cfg *config.Config, arg string) (string, error) {
	if len(cfg.Tables) == 0 {
		return "", errors.New("the config protects no table (tables: is empty)")
	}
	keys := make([]string, 0, len(cfg.Tables))
	for k := range cfg.Tables {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	schema, table, err := config.SplitTable(arg)
	if err != nil {
		var e2 error
		if _, table, e2 = config.SplitTable("x." + arg); e2 != nil {
			return "", fmt.Errorf("--table %q: %v", arg, err)
		}
		schema = ""
	}
	var found []string
	for _, k := range keys {
		s, t, err := config.SplitTable(k)
		if err == nil && t == table && (schema == "" || s == schema) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("--table %s is not a protected table of the config; protected: %s", arg, strings.Join(keys, ", "))
	}
	return "", fmt.Errorf("--table %s is ambiguous: %s; write schema.table", arg, strings.Join(found, ", "))
}

func sortedNames(m map[string]config.Column) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// columns resolves the chosen rules for a run, as serve does
// (catalog.NewRule): identity, search group, type and mode.
func (e *migrateEnv) columns() ([]migrate.Column, error) {
	var cols []migrate.Column
	for _, n := range e.names {
		r, err := catalog.NewRule(e.rel.Schema, e.rel.Name, n, e.rules[n])
		if err != nil {
			return nil, fmt.Errorf("tables.%s.%s: %w", e.table, n, err)
		}
		kr, err := e.keys.Keyring(r.Key)
		if err != nil {
			return nil, err
		}
		cols = append(cols, migrate.Column{Name: n, Type: r.Type, Mode: r.Mode, ID: r.ID, Keyring: kr})
	}
	return cols, nil
}

// options are the Run options of the flags, with a progress bar on a
// terminal and log lines otherwise.
func (e *migrateEnv) options(op migrate.Op, cols []migrate.Column) migrate.Options {
	o := migrate.Options{Op: op, Rel: e.rel, Columns: cols, Batch: e.f.batch, Throttle: e.f.throttle, Log: e.log}
	if f, ok := e.errw.(*os.File); ok && isTerminal(f) {
		e.bar = migrate.NewBar(f)
		o.Progress = e.bar
	} else {
		o.Progress = migrate.NewLogReporter(e.log, 5*time.Second)
	}
	return o
}

// lockWait is how long a migrate command waits for another one on the same
// table (a killed run's session may take a moment to end).
const lockWait = 10 * time.Second

func migratePlan(_ context.Context, e *migrateEnv) error {
	var cols []migrate.PlanColumn
	for _, n := range e.names {
		r, err := catalog.NewRule(e.rel.Schema, e.rel.Name, n, e.rules[n])
		if err != nil {
			return fmt.Errorf("tables.%s.%s: %w", e.table, n, err)
		}
		cols = append(cols, migrate.PlanColumn{Name: n, Type: r.Type, Mode: r.Mode, Keyring: r.Key, Group: r.Group})
	}
	script, err := migrate.Plan(e.rel, e.table, cols)
	if err != nil {
		return err
	}
	_, err = io.WriteString(e.out, script)
	return err
}

func migrateEncrypt(ctx context.Context, e *migrateEnv) error {
	cols, err := e.columns()
	if err != nil {
		return err
	}
	var notMigrating []string
	for _, n := range e.names {
		if e.rules[n].State != config.StateMigrating {
			notMigrating = append(notMigrating, n)
		}
	}
	if len(notMigrating) > 0 {
		fmt.Fprintf(e.errw, "note: %s %s state: encrypted in the config: pgcloak instances with it fail on rows not encrypted yet. "+
			"Set state: migrating and restart them first, unless the columns hold no plaintext.\n",
			e.table+" "+strings.Join(notMigrating, ", "), map[bool]string{true: "has", false: "have"}[len(notMigrating) == 1])
	}
	if !e.f.yes {
		if err := e.confirm(fmt.Sprintf("Encrypt %s (%s) in place with the active keys?", e.rel.String(), strings.Join(e.names, ", "))); err != nil {
			return err
		}
	}
	release, err := migrate.Lock(ctx, e.conn, e.rel, lockWait)
	if err != nil {
		return err
	}
	defer release()
	res, err := migrate.Run(ctx, e.conn, e.options(migrate.OpEncrypt, cols))
	if err = e.summary(migrate.OpEncrypt, res, err); err != nil {
		return err
	}
	if err := migrate.AddBackstops(ctx, e.conn, e.rel, e.names); err != nil {
		return err
	}
	names := make([]string, len(e.names))
	for i, n := range e.names {
		names[i] = catalog.BackstopName(n)
	}
	fmt.Fprintf(e.out, "CHECK constraints %s are in place and validated: values without the pgcloak header are refused from now on.\n", strings.Join(names, ", "))
	fmt.Fprintf(e.out, "Next: set state: encrypted (or remove state:) for %s in the config and restart pgcloak; pgcloak check verifies the setup.\n", e.columnList())
	fmt.Fprintf(e.out, "The plaintext stays in dead row versions, WAL and older backups until cleaned up (VACUUM FULL %s; CHECKPOINT; a new base backup): see docs/lifecycle.md.\n", e.rel.Ident())
	return nil
}

func migrateRotate(ctx context.Context, e *migrateEnv) error {
	cols, err := e.columns()
	if err != nil {
		return err
	}
	release, err := migrate.Lock(ctx, e.conn, e.rel, lockWait)
	if err != nil {
		return err
	}
	defer release()
	before := map[string]uint32{}
	for _, c := range cols {
		before[c.Keyring.Name()], _ = c.Keyring.Active()
	}
	res, err := migrate.Run(ctx, e.conn, e.options(migrate.OpRotate, cols))
	if err = e.summary(migrate.OpRotate, res, err); err != nil {
		return err
	}
	for _, name := range sortedKeysOf(before) {
		kr, _ := e.keys.Keyring(name)
		if v, _ := kr.Active(); v != before[name] {
			fmt.Fprintf(e.out, "keyring %s: version %d appeared while rotate ran; run pgcloak migrate rotate --table %s again to re-encrypt the values written under %d.\n",
				name, v, e.table, before[name])
			continue
		}
		fmt.Fprintf(e.out, "keyring %s: every value of %s is under version %d now.\n", name, e.columnList(), before[name])
	}
	return nil
}

func sortedKeysOf(m map[string]uint32) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func migrateDecrypt(ctx context.Context, e *migrateEnv) error {
	if !e.f.confirmDecrypt {
		return fmt.Errorf("decrypt writes the plaintext of %s (%s) back into the database; pass --confirm-decrypt to confirm", e.rel.String(), strings.Join(e.names, ", "))
	}
	for _, n := range e.names {
		if e.rules[n].State != config.StateMigrating {
			return fmt.Errorf("tables.%s.%s has state: encrypted: pgcloak instances with it would refuse the plaintext that decrypt writes back; "+
				"set state: migrating, restart pgcloak, then run decrypt again", e.table, n)
		}
	}
	cols, err := e.columns()
	if err != nil {
		return err
	}
	release, err := migrate.Lock(ctx, e.conn, e.rel, lockWait)
	if err != nil {
		return err
	}
	defer release()
	if err := migrate.DropBackstops(ctx, e.conn, e.rel, e.names); err != nil {
		return err
	}
	res, err := migrate.Run(ctx, e.conn, e.options(migrate.OpDecrypt, cols))
	if err = e.summary(migrate.OpDecrypt, res, err); err != nil {
		return err
	}
	restore := migrate.RestoreSQL(e.rel, cols)
	if !e.f.restoreType {
		if restore == "" {
			fmt.Fprintf(e.out, "The columns' logical type is bytea: no type to restore. Remove their rules from the config and restart pgcloak.\n")
			return nil
		}
		fmt.Fprintf(e.out, "Values written through pgcloak from now on are still encrypted. To finish, stop the writes to %s through pgcloak, then run\n"+
			"  pgcloak migrate decrypt --table %s --confirm-decrypt --restore-type\n"+
			"which decrypts what is left and runs, in the same transaction:\n%s"+
			"then remove the rules of %s from the config and restart pgcloak (or connect the applications to PostgreSQL).\n",
			e.rel.String(), e.table, indentLines(restore, "  ")+"\n", e.columnList())
		return nil
	}
	rres, err := migrate.Restore(ctx, e.conn, e.options(migrate.OpDecrypt, cols))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "restored the column types of %s (%d values written through pgcloak meanwhile decrypted first):\n%s",
		e.rel.String(), rres.Changed, indentLines(restore, "  ")+"\n")
	fmt.Fprintf(e.out, "Now remove the rules of %s from the config and restart pgcloak (or connect the applications to PostgreSQL): "+
		"pgcloak refuses to start while a protected column is not bytea.\n", e.columnList())
	return nil
}

// summary prints what a run did, also when it stopped on an error, and
// returns the error, saying how to go on after an interruption.
func (e *migrateEnv) summary(op migrate.Op, r migrate.Result, err error) error {
	if e.bar != nil {
		e.bar.Break()
	}
	if r.Resumed {
		fmt.Fprintf(e.out, "resumed after primary key (%s): the earlier runs had gone through %d rows\n", strings.Join(r.ResumeKey, ", "), r.Done-r.Rows)
	}
	verb := map[migrate.Op]string{migrate.OpEncrypt: "encrypted", migrate.OpRotate: "re-encrypted", migrate.OpDecrypt: "decrypted"}[op]
	done := map[migrate.Op]string{migrate.OpEncrypt: "already encrypted", migrate.OpRotate: "already current", migrate.OpDecrypt: "already plaintext"}[op]
	fmt.Fprintf(e.out, "%s %s: %d rows in %s (%.0f rows/s): %d values %s, %d %s, %d left to concurrent writes\n",
		op, e.rel.String(), r.Rows, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Changed, verb, r.Skipped, done, r.Lost)
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted; the batches done are committed: run the same command again to resume")
	}
	return err
}

// confirm asks on a terminal; without one, --yes is required.
func (e *migrateEnv) confirm(question string) error {
	f, ok := e.in.(*os.File)
	if !ok || !isTerminal(f) {
		return errors.New("no terminal to ask for confirmation on; pass --yes")
	}
	fmt.Fprintf(e.errw, "%s [y/N] ", question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("no answer (standard input is closed); nothing was changed: pass --yes to run without asking")
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

func (e *migrateEnv) columnList() string {
	return e.table + " " + strings.Join(e.names, ", ")
}
