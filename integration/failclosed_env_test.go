package integration

// The environment of the fail-closed corpus (issue 10): a cluster of its
// own, a template database per setup, one clone of it per probe with
// pgcloak in front, and the checks that every probe ends with.
//
// Setup "a" has no CHECK backstop on the protected columns: it tests what
// pgcloak refuses by itself. Setup "b" has the backstop migrate adds
// (pgcloak_<col>_encrypted): defence in depth, where the database may refuse
// what pgcloak let through but plaintext must never be stored.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/migrate"
	"github.com/pgcloak/pgcloak/proxy"
)

// fcSchema is the database every probe starts from. customers and
// "Crm"."Clients" are protected; the rest is not. Tables that probes fill
// with a marker on purpose (a staging table, another schema's namesake) are
// UNLOGGED, so the marker never enters the WAL legitimately and the WAL scan
// stays meaningful for every probe.
const fcSchema = `
CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text);
CREATE SCHEMA "Crm";
CREATE TABLE "Crm"."Clients" (id int PRIMARY KEY, "Email" bytea, note text);
CREATE SCHEMA crm;
CREATE UNLOGGED TABLE crm.clients (id int PRIMARY KEY, "Email" bytea, note text);
CREATE SCHEMA other;
CREATE UNLOGGED TABLE other.customers (id int PRIMARY KEY, email bytea, phone bytea, note text);
CREATE SCHEMA other2;
CREATE UNLOGGED TABLE staging (id int, email bytea, phone bytea, note text);
CREATE UNLOGGED TABLE orders (id int PRIMARY KEY, customer_id int, note text);
CREATE UNLOGGED TABLE inbox (id int, e text);
`

// fcTables protects customers.email (randomized), customers.phone
// (deterministic) and "Crm"."Clients"."Email" (a mixed-case schema, table and
// column).
const fcTables = `
public.customers:
  email: {type: text, key: pii}
  phone: {type: text, key: pii, mode: deterministic}
'"Crm"."Clients"':
  Email: {type: text, key: pii}
`

// fcProtected are the configured columns, as catalog names.
var fcProtected = []struct{ schema, table, column string }{
	{"public", "customers", "email"},
	{"public", "customers", "phone"},
	{"Crm", "Clients", "Email"},
}

// fcSeed are the rows written through pgcloak into every probe's database
// before the probe: UPDATE probes change them, row expansion probes copy
// them, the read corpus reads them.
const (
	fcSeedEmail1 = "ada@example.org"
	fcSeedPhone1 = "+44 20 7946 0001"
	fcSeedEmail2 = "grace@example.com"
	fcSeedPhone2 = "+1 202 555 0102"
	fcSeedClient = "alan@example.net"
)

// fcAllowMissingBackstop is the top-level config line that lets serve relay
// a protected column without its backstop (setup a), once config.Config has
// the key (issue 10 adds it); empty while it does not exist, when serve does
// not ask for the backstop at all.
func fcAllowMissingBackstop() string {
	t := reflect.TypeOf(config.Config{})
	for i := 0; i < t.NumField(); i++ {
		if strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0] == "allow_missing_backstop" {
			return "allow_missing_backstop: true\n"
		}
	}
	return ""
}

// fcCluster is the cluster of one fail-closed test. WAL is kept (no segment
// is recycled while the test runs), so a probe's WAL can be scanned after
// other probes' CHECKPOINTs.
type fcCluster struct {
	pg    *harness.Postgres
	vault *harness.Vault
	// tmpl is the template database of each setup ("a", "b").
	tmpl map[string]string
	// transitKey is the Transit key that wraps the data keys of every clone.
	transitKey string
	// keys decrypt what probes store, for the checks (loaded from a clone of
	// their own: a template must have no sessions to be cloned).
	keys crypto.Keyrings
	ids  map[string]crypto.ColumnID // "schema.table.column" → identity
	// drop takes the databases of finished probes to a goroutine that drops
	// them, off the probes' path, so the cluster does not grow by a database
	// per probe.
	drop chan string
}

// newFCCluster starts the cluster and makes the two templates.
func newFCCluster(t *testing.T) *fcCluster {
	t.Helper()
	pg := harness.StartPostgres(t, harness.PostgresOptions{Settings: map[string]string{
		"wal_keep_size":      "'8GB'",
		"max_wal_size":       "'8GB'",
		"checkpoint_timeout": "'1h'",
		"max_connections":    "300",
	}})
	c := &fcCluster{pg: pg, vault: sharedVault(t), tmpl: map[string]string{}, drop: make(chan string, 1024)}
	dropped := make(chan struct{})
	go func() {
		defer close(dropped)
		for db := range c.drop {
			_ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
		}
	}()
	t.Cleanup(func() { close(c.drop); <-dropped })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := "fct_a_" + randomSuffix()
	c.transitKey = "pgcloak-pii-" + a
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+a); err != nil {
		t.Fatal(err)
	}
	if err := pg.ExecDB(a, fcSchema); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vault-token"), []byte(c.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := c.writeConfig(t, dir, a, "a", "")
	var out, errb bytes.Buffer
	if code := cmd.RunKeys([]string{"init", "--config", cfgPath, "--log-level", "warn"}, &out, &errb); code != 0 {
		t.Fatalf("pgcloak keys init: exit %d: %s", code, errb.String())
	}
	c.tmpl["a"] = a

	// Setup b: the same database with the backstop on every protected
	// column, added by the code migrate uses.
	b := "fct_b_" + randomSuffix()
	if err := pg.ExecDB("postgres", fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY", b, a)); err != nil {
		t.Fatal(err)
	}
	bc, err := pgx.Connect(ctx, pg.DSN(harness.SuperUser, b))
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range [][2]string{{"public", "customers"}, {"Crm", "Clients"}} {
		rel, err := migrate.Inspect(ctx, bc, tbl[0], tbl[1])
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, p := range fcProtected {
			if p.schema == tbl[0] && p.table == tbl[1] {
				cols = append(cols, p.column)
			}
		}
		if err := migrate.AddBackstops(ctx, bc, rel, cols); err != nil {
			t.Fatalf("adding the backstops: %v", err)
		}
	}
	bc.Close(ctx)
	c.tmpl["b"] = b

	// The checks' own keyring.
	k := "fck_" + randomSuffix()
	if err := pg.ExecDB("postgres", fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY", k, a)); err != nil {
		t.Fatal(err)
	}
	kcfg, err := config.Load(c.writeConfig(t, dir, k, "a", ""))
	if err != nil {
		t.Fatal(err)
	}
	keys, closeKeys, err := cmd.OpenKeyrings(ctx, kcfg, zap.NewNop())
	if err != nil {
		t.Fatalf("loading keys: %v", err)
	}
	t.Cleanup(closeKeys)
	c.keys = keys
	c.ids = map[string]crypto.ColumnID{}
	for _, p := range fcProtected {
		id, err := crypto.NewColumnID(p.schema, p.table, p.column)
		if err != nil {
			t.Fatal(err)
		}
		c.ids[p.schema+"."+p.table+"."+p.column] = id
	}
	return c
}

// writeConfig writes dir/pgcloak-DB.yaml for database db in setup with
// extra top-level YAML, and returns its path. Setup a allows the missing
// backstop where config knows the key.
func (c *fcCluster) writeConfig(t *testing.T, dir, db, setup, extra string) string {
	t.Helper()
	if setup == "a" {
		extra = fcAllowMissingBackstop() + extra
	}
	yaml := fmt.Sprintf(`upstream: "host=%s port=%d sslmode=disable"
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: %s}
tables:
%s
%s
`, c.pg.Host, c.pg.Port, c.pg.DSN(harness.SuperUser, db), c.vault.Addr, c.transitKey, indent(fcTables), extra)
	path := filepath.Join(dir, "pgcloak-"+db+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fcEnv is one probe's database (a clone of its setup's template) with
// pgcloak in front of it, relaying through a wire recorder.
type fcEnv struct {
	t        *testing.T
	c        *fcCluster
	setup    string
	db       string
	dbOID    uint32
	addr     string // pgcloak
	srv      *proxy.Server
	wire     *wireRecorder
	log      *lockedBuffer // pgcloak's log
	walStart string        // "segment:offset" of the WAL insert position before the probe's database existed
	born     time.Time     // when the clone was made: only files written since can hold a marker
	orig     []fcPos       // the protected columns as they were at the start
	// origOther are the other columns of the protected tables at the start:
	// a configured name that comes to mean one of them (columns swapped by
	// renames) does not make its old values protected.
	origOther map[[2]int64]bool
}

// fcEnvOptions shape one probe's env.
type fcEnvOptions struct {
	setup    string // "a" or "b"
	preStart string // SQL run directly before pgcloak starts
	extra    string // more top-level YAML
}

// newFCEnv clones the setup's template, runs preStart directly, starts
// pgcloak and writes the seed rows through it.
func newFCEnv(t *testing.T, c *fcCluster, o fcEnvOptions) *fcEnv {
	t.Helper()
	e := &fcEnv{t: t, c: c, setup: o.setup, db: "fc_" + randomSuffix(), log: &lockedBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := c.direct(t, ctx, "postgres")
	if err := d.QueryRow(ctx, "SELECT file_name || ':' || file_offset FROM pg_walfile_name_offset(pg_current_wal_insert_lsn())").Scan(&e.walStart); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY", e.db, c.tmpl[o.setup])); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after pgcloak and the sessions are gone.
	t.Cleanup(func() { c.drop <- e.db })
	d.Close(ctx)
	e.born = time.Now()
	if o.preStart != "" {
		sql := strings.NewReplacer("{DB}", e.db, "{PORT}", strconv.Itoa(c.pg.Port)).Replace(o.preStart)
		if err := c.pg.ExecDB(e.db, sql); err != nil {
			t.Fatalf("probe set-up (directly, before pgcloak starts): %v", err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vault-token"), []byte(c.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(c.writeConfig(t, dir, e.db, o.setup, o.extra))
	if err != nil {
		t.Fatal(err)
	}
	e.wire = startWireRecorder(t, c.pg)
	host, port, _ := strings.Cut(e.wire.addr, ":")
	cfg.Upstream = fmt.Sprintf("host=%s port=%s sslmode=disable", host, port)
	cfg.Listen = "127.0.0.1:0"
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(e.log), zapcore.InfoLevel))
	e.addr, e.srv = startCloakProxy(t, cfg, log)

	d = e.directConn(ctx)
	defer d.Close(ctx)
	if err := d.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&e.dbOID); err != nil {
		t.Fatal(err)
	}
	s, err := pgx.Connect(ctx, e.dsn(nil))
	if err != nil {
		t.Fatalf("connecting through pgcloak: %v", err)
	}
	defer s.Close(ctx)
	if _, err := s.Exec(ctx, `INSERT INTO customers (id, email, phone, note) VALUES (1, $1, $2, 'seed one'), (2, $3, $4, 'seed two')`,
		fcSeedEmail1, fcSeedPhone1, fcSeedEmail2, fcSeedPhone2); err != nil {
		t.Fatalf("seeding customers through pgcloak: %v", err)
	}
	if _, err := s.Exec(ctx, `INSERT INTO "Crm"."Clients" (id, "Email", note) VALUES (1, $1, 'seed')`, fcSeedClient); err != nil {
		t.Fatalf("seeding \"Crm\".\"Clients\" through pgcloak: %v", err)
	}
	e.orig = e.positions(ctx, d, nil)
	e.origOther = map[[2]int64]bool{}
	for _, p := range e.orig {
		rows, err := d.Query(ctx, `SELECT attnum FROM pg_attribute WHERE attrelid = $1 AND attnum > 0`, p.relid)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n int16
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			e.origOther[[2]int64{int64(p.relid), int64(n)}] = true
		}
		rows.Close()
	}
	for _, p := range e.orig {
		delete(e.origOther, [2]int64{int64(p.relid), int64(p.attnum)})
	}
	return e
}

// logTail returns the last n warnings and errors pgcloak logged, one per
// line, for a failure message.
func (e *fcEnv) logTail(n int) string {
	var keep []string
	for _, line := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) ||
			strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			keep = append(keep, fcShorten(line, 400))
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	if len(keep) == 0 {
		return "(none)"
	}
	return strings.Join(keep, "\n    ")
}

// dsn is a URL through pgcloak as the superuser with extra runtime params.
func (e *fcEnv) dsn(params map[string]string) string {
	s := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, e.addr, e.db)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += "&" + k + "=" + urlQueryEscape(params[k])
	}
	return s
}

// directConn connects to the probe's database straight to PostgreSQL. The
// caller closes it.
func (e *fcEnv) directConn(ctx context.Context) *pgx.Conn {
	e.t.Helper()
	return e.c.direct(e.t, ctx, e.db)
}

// direct connects to db straight to PostgreSQL as the superuser. The caller
// closes it.
func (c *fcCluster) direct(t *testing.T, ctx context.Context, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.pg.DSN(harness.SuperUser, db))
	if err != nil {
		t.Fatalf("connecting directly to %s: %v", db, err)
	}
	return conn
}

// fcPos is a protected column as the catalog has it now: where the values
// of a configured column are, whatever has been renamed or moved.
type fcPos struct {
	relid   uint32
	attnum  int16
	rel     string // regclass text, for messages
	column  string // current name
	typ     string // current type (format_type)
	isBytea bool   // bytea or a domain over it
	id      string // the configured identity it must decrypt under
}

func (p fcPos) String() string { return p.rel + "." + p.column }

// positions finds the protected columns: the ones recorded at the start by
// relation OID and attribute number (renames and moves keep them), what the
// configured names name now (a table dropped and re-created, a column
// dropped and added) unless that is a column that was there unprotected,
// and the same columns of tables that inherit from any of them.
func (e *fcEnv) positions(ctx context.Context, d *pgx.Conn, orig []fcPos) []fcPos {
	e.t.Helper()
	var out []fcPos
	seen := map[[2]int64]bool{}
	add := func(p fcPos) {
		k := [2]int64{int64(p.relid), int64(p.attnum)}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	const q = `SELECT c.oid, a.attnum, c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),
		a.atttypid = 'bytea'::regtype OR (SELECT typbasetype = 'bytea'::regtype FROM pg_type WHERE oid = a.atttypid)
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped `
	scan := func(id string, byName bool, sql string, args ...any) {
		rows, err := d.Query(ctx, sql, args...)
		if err != nil {
			e.t.Fatalf("reading the catalog: %v", err)
		}
		defer rows.Close()
		for rows.Next() {
			p := fcPos{id: id}
			if err := rows.Scan(&p.relid, &p.attnum, &p.rel, &p.column, &p.typ, &p.isBytea); err != nil {
				e.t.Fatal(err)
			}
			if byName && e.origOther[[2]int64{int64(p.relid), int64(p.attnum)}] {
				continue
			}
			add(p)
		}
		if err := rows.Err(); err != nil {
			e.t.Fatalf("reading the catalog: %v", err)
		}
	}
	for _, o := range orig {
		scan(o.id, false, q+`WHERE c.oid = $1 AND a.attnum = $2`, o.relid, o.attnum)
	}
	for _, p := range fcProtected {
		scan(p.schema+"."+p.table+"."+p.column, true, q+`JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND c.relkind IN ('r', 'p')`, p.schema, p.table, p.column)
	}
	// Children (inheritance, partitions) hold values of the parent's column.
	for i := 0; i < len(out); i++ {
		scan(out[i].id, false, q+`JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = $1 AND a.attname = $2`, out[i].relid, out[i].column)
	}
	return out
}

// urlQueryEscape escapes a runtime parameter value for a URL query.
func urlQueryEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// fcFinding is what the checks found about one marker in the database.
type fcFinding struct {
	// storedEncrypted: a protected value decrypts (under its own column)
	// to a plaintext holding the marker.
	storedEncrypted []string
	// plaintexts are the decrypted values of storedEncrypted.
	plaintexts []string
	// storedPlain: the marker is in a protected column as plaintext.
	storedPlain []string
	// unprotected: the marker is in a table that may hold it.
	unprotected []string
	// problems break the promise or a rule of the corpus.
	problems []string
	// notes are worth reporting but break nothing.
	notes []string
	// wireLeak says how a marker reached PostgreSQL in plaintext from
	// pgcloak ("" if it did not, or the probe allows it).
	wireLeak string
}

// check runs every check of the database side for the markers: the
// protected columns hold only ciphertext that decrypts under its own
// column; the markers are in no table but the allowed ones, in no heap
// file of the database but the allowed relations', in no WAL written since
// the probe began, and (unless allowed) never reached PostgreSQL from
// pgcloak. allow are relations (regclass text) where a marker may be.
func (e *fcEnv) check(markers []string, allow []string, wireAllowed bool) *fcFinding {
	e.t.Helper()
	f := &fcFinding{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.directConn(ctx)
	defer d.Close(ctx)
	allowed := map[string]bool{}
	for _, a := range allow {
		allowed[a] = true
	}
	has := func(data []byte) string {
		for _, m := range markers {
			if leakContains(data, m) {
				return m
			}
		}
		return ""
	}

	// 1. The protected columns.
	positions := e.positions(ctx, d, e.orig)
	for _, p := range positions {
		expr := `t.` + pgx.Identifier{p.column}.Sanitize()
		if !p.isBytea {
			expr = "convert_to(" + expr + "::text, 'UTF8')"
		} else {
			expr += "::bytea"
		}
		rows, err := d.Query(ctx, fmt.Sprintf(`SELECT t.ctid::text, %s FROM %s t WHERE %s IS NOT NULL`, expr, p.rel, expr))
		if err != nil {
			f.problems = append(f.problems, fmt.Sprintf("reading protected column %s directly: %v", p, err))
			continue
		}
		for rows.Next() {
			var ctid string
			var v []byte
			if err := rows.Scan(&ctid, &v); err != nil {
				f.problems = append(f.problems, fmt.Sprintf("reading protected column %s directly: %v", p, err))
				break
			}
			raw := v
			if !p.isBytea {
				// A retyped column holds text: ciphertext survives as its hex form.
				raw = fcUnhex(v)
			}
			where := fmt.Sprintf("%s (type %s) row %s", p, p.typ, ctid)
			if !crypto.IsCiphertext(raw) {
				if m := has(v); m != "" {
					f.storedPlain = append(f.storedPlain, where)
					f.problems = append(f.problems, fmt.Sprintf("PLAINTEXT STORED: %s holds %s", where, fcQuote(v)))
				} else {
					f.problems = append(f.problems, fmt.Sprintf("NOT CIPHERTEXT: %s holds %s (no marker: written by the probe's own set-up?)", where, fcQuote(v)))
				}
				continue
			}
			pt, under, err := e.decrypt(raw, p.id)
			switch {
			case err != nil && has(raw) != "":
				f.storedPlain = append(f.storedPlain, where)
				f.problems = append(f.problems, fmt.Sprintf("PLAINTEXT STORED behind a forged header (passes the CHECK): %s holds %s", where, fcQuote(raw)))
			case err != nil:
				f.problems = append(f.problems, fmt.Sprintf("UNDECRYPTABLE: %s holds a value with the pgcloak header that does not decrypt under any protected column: %v", where, err))
			case under != p.id:
				f.problems = append(f.problems, fmt.Sprintf("MISPLACED CIPHERTEXT: %s holds ciphertext of %s (%s): reads fail", where, under, fcQuote([]byte(pt))))
			case has([]byte(pt)) != "":
				f.storedEncrypted = append(f.storedEncrypted, fmt.Sprintf("%s = %s", where, fcQuote([]byte(pt))))
				f.plaintexts = append(f.plaintexts, pt)
			}
		}
		rows.Close()
	}

	// 2. Every table of the database, as text.
	protectedRel := map[uint32]bool{}
	for _, p := range positions {
		protectedRel[p.relid] = true
	}
	rows, err := d.Query(ctx, `SELECT c.oid, c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'`)
	if err != nil {
		e.t.Fatal(err)
	}
	type rel struct {
		oid  uint32
		name string
	}
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.oid, &r.name); err != nil {
			e.t.Fatal(err)
		}
		rels = append(rels, r)
	}
	rows.Close()
	for _, r := range rels {
		var hits []int
		var cipher int
		if err := d.QueryRow(ctx, fmt.Sprintf(`SELECT array_agg((SELECT count(*) FROM %[1]s t WHERE strpos(t::text, m) > 0 OR strpos(t::text, encode(convert_to(m, 'UTF8'), 'hex')) > 0) ORDER BY i),
			(SELECT count(*) FROM %[1]s t WHERE t::text ~ '504743010[12]') FROM unnest($1::text[]) WITH ORDINALITY AS u(m, i)`, r.name), markers).Scan(&hits, &cipher); err != nil {
			f.problems = append(f.problems, fmt.Sprintf("searching %s: %v", r.name, err))
			continue
		}
		for i, n := range hits {
			if n == 0 {
				continue
			}
			switch {
			case allowed[r.name]:
				f.unprotected = append(f.unprotected, fmt.Sprintf("%s (%d rows)", r.name, n))
			case protectedRel[r.oid]:
				// Reported column by column above; a copy in an unprotected column
				// of a protected table is reported here.
				if len(f.storedPlain) == 0 {
					f.problems = append(f.problems, fmt.Sprintf("MARKER %s in an unprotected column of protected table %s (%d rows)", markers[i], r.name, n))
				}
			default:
				f.problems = append(f.problems, fmt.Sprintf("MARKER %s in table %s (%d rows), which the probe did not allow", markers[i], r.name, n))
			}
		}
		// Ciphertext in a table that is not protected: not a leak, but reads
		// of it hand ciphertext to the application.
		if !protectedRel[r.oid] && cipher > 0 {
			f.notes = append(f.notes, fmt.Sprintf("pgcloak ciphertext in unprotected table %s (%d rows)", r.name, cipher))
		}
	}

	// 3. Heap files and WAL, after a checkpoint.
	if _, err := d.Exec(ctx, "CHECKPOINT"); err != nil {
		e.t.Fatal(err)
	}
	files := map[string]string{} // relfilenode path → relation
	frows, err := d.Query(ctx, `SELECT pg_relation_filepath(oid), oid::regclass::text FROM pg_class WHERE pg_relation_filepath(oid) IS NOT NULL`)
	if err != nil {
		e.t.Fatal(err)
	}
	for frows.Next() {
		var path, name string
		if err := frows.Scan(&path, &name); err != nil {
			e.t.Fatal(err)
		}
		files[path] = name
	}
	frows.Close()
	baseDir := filepath.Join(e.c.pg.DataDir, "base", strconv.FormatUint(uint64(e.dbOID), 10))
	_ = filepath.WalkDir(baseDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return nil
		}
		if info, err := de.Info(); err != nil || info.ModTime().Before(e.born) {
			return nil // untouched since the clone: holds nothing the probe wrote
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil // a file the server removed meanwhile
		}
		m := has(data)
		if m == "" {
			return nil
		}
		rel, _ := filepath.Rel(e.c.pg.DataDir, path)
		// base/DB/NODE, NODE.1, NODE_fsm …: the relation file is the digits.
		fileBase := filepath.Base(rel)
		key := filepath.Dir(rel) + "/" + fileBase[:fcDigits(fileBase)]
		name := files[key]
		if name == "" {
			name = "unknown relation"
		}
		if allowed[name] || strings.HasPrefix(filepath.Base(path), "t") {
			return nil // an allowed relation, or a temporary one
		}
		f.problems = append(f.problems, fmt.Sprintf("MARKER %s in heap file %s (%s) %s", m, rel, name, leakWhich(data, m)))
		return nil
	})
	var walEnd string
	if err := d.QueryRow(ctx, "SELECT file_name || ':' || file_offset FROM pg_walfile_name_offset(pg_current_wal_insert_lsn())").Scan(&walEnd); err != nil {
		e.t.Fatal(err)
	}
	for _, p := range fcWALRange(filepath.Join(e.c.pg.DataDir, "pg_wal"), e.walStart, walEnd) {
		if m := has(p.data); m != "" {
			f.problems = append(f.problems, fmt.Sprintf("MARKER %s in WAL segment %s %s", m, p.name, leakWhich(p.data, m)))
		}
	}

	// 4. What pgcloak sent to PostgreSQL.
	if !wireAllowed {
		up, _ := e.wire.bytes()
		if m := has(up); m != "" {
			f.wireLeak = fmt.Sprintf("PLAINTEXT SENT: marker %s reached PostgreSQL from pgcloak %s", m, leakWhich(up, m))
		}
	}
	return f
}

// fcWALPart is the part of a WAL segment file written between two insert
// positions.
type fcWALPart struct {
	name string
	data []byte
}

// fcWALRange reads the WAL from start to end ("segment:offset", as
// pg_walfile_name_offset gives them). A marker split by a WAL page header
// (every 8 kB) is not found; the chance is its length in 8192.
func fcWALRange(dir, start, end string) []fcWALPart {
	sSeg, sOff, _ := strings.Cut(start, ":")
	eSeg, eOff, _ := strings.Cut(end, ":")
	from, _ := strconv.Atoi(sOff)
	to, _ := strconv.Atoi(eOff)
	segs, _ := filepath.Glob(filepath.Join(dir, "[0-9A-F]*"))
	sort.Strings(segs)
	var out []fcWALPart
	for _, path := range segs {
		name := filepath.Base(path)
		if len(name) != 24 || name < sSeg || name > eSeg {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		lo, hi := 0, int(info.Size())
		if name == sSeg {
			lo = min(from, hi)
		}
		if name == eSeg {
			hi = min(to+8192, hi) // the record at end, whole
		}
		if lo < hi {
			data := make([]byte, hi-lo)
			n, _ := f.ReadAt(data, int64(lo))
			out = append(out, fcWALPart{name: name, data: data[:n]})
		}
		f.Close()
	}
	return out
}

// decrypt decrypts v under the identity want, or else under any protected
// column's, and says which.
func (e *fcEnv) decrypt(v []byte, want string) (string, string, error) {
	kr, err := e.c.keys.Keyring("pii")
	if err != nil {
		return "", "", err
	}
	if pt, err := kr.Decrypt(nil, v, e.c.ids[want]); err == nil {
		return string(pt), want, nil
	}
	var first error
	for name, id := range e.c.ids {
		pt, err := kr.Decrypt(nil, v, id)
		if err == nil {
			return string(pt), name, nil
		}
		if first == nil {
			first = err
		}
	}
	return "", "", first
}

// fcUnhex turns text holding a bytea hex form (`\x…`) back into bytes; other
// text is returned as it is.
func fcUnhex(v []byte) []byte {
	s := string(v)
	s = strings.TrimPrefix(s, `\x`)
	if len(s)%2 != 0 || len(s) == 0 {
		return v
	}
	out := make([]byte, len(s)/2)
	for i := 0; i < len(out); i++ {
		n, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return v
		}
		out[i] = byte(n)
	}
	return out
}

// fcQuote shows a value for a message, shortened.
func fcQuote(v []byte) string {
	if len(v) > 80 {
		return strconv.Quote(string(v[:80])) + "…"
	}
	return strconv.Quote(string(v))
}

// fcCiphertextForms are the shapes pgcloak ciphertext takes in a value a
// client receives: raw bytes (binary format), the hex text of bytea (also
// inside JSON and composite text), base64, and the escape format.
var fcCiphertextForms = [][]byte{
	[]byte("PGC\x01\x01"), []byte("PGC\x01\x02"),
	[]byte("5047430101"), []byte("5047430102"),
	[]byte("UEdDAQE"), []byte("UEdDAQI"),
	[]byte(`PGC\001\001`), []byte(`PGC\001\002`), []byte(`PGC\\001\\001`), []byte(`PGC\\001\\002`),
}

// fcHasCiphertext reports whether a value a client received carries pgcloak
// ciphertext.
func fcHasCiphertext(v []byte) bool {
	lower := bytes.ToLower(v)
	for _, f := range fcCiphertextForms {
		if bytes.Contains(v, f) || f[0] == '5' && bytes.Contains(lower, f) {
			return true
		}
	}
	return false
}

// fcDigits is the length of the leading digits of s.
func fcDigits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// fcErrIsPgcloak reports whether an error message is pgcloak's own.
func fcErrIsPgcloak(msg string) bool { return strings.HasPrefix(msg, "pgcloak:") }

// fcReport collects the outcome of every probe of a test for the summary.
type fcReport struct {
	mu   sync.Mutex
	rows []fcReportRow
}

type fcReportRow struct {
	probe, class, setup, outcome string
	problems                     []string
}

func (r *fcReport) add(row fcReportRow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row)
}

// write prints the summary and, with PGCLOAK_FAILCLOSED_REPORT set, writes
// it to that file (tab-separated: probe, class, setup, verdict, outcome,
// problems).
func (r *fcReport) write(t *testing.T, title string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sort.Slice(r.rows, func(i, j int) bool {
		if r.rows[i].probe != r.rows[j].probe {
			return r.rows[i].probe < r.rows[j].probe
		}
		return r.rows[i].setup < r.rows[j].setup
	})
	var b strings.Builder
	pass, fail := 0, 0
	for _, row := range r.rows {
		verdict := "ok"
		if len(row.problems) > 0 {
			verdict = "FAIL"
			fail++
		} else {
			pass++
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\t%s\n", row.probe, row.class, row.setup, verdict, row.outcome, strings.Join(row.problems, " | "))
	}
	t.Logf("%s: %d ok, %d failing (probe × setup)\n%s", title, pass, fail, b.String())
	if path := os.Getenv("PGCLOAK_FAILCLOSED_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Logf("report: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "# %s: %d ok, %d failing\n%s", title, pass, fail, b.String())
	}
}
