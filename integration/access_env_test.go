package integration

// The access-rules environment (issue 13): one database with a customers
// table whose four protected columns each role sees differently, and a
// table with one protected column per logical type for the masking formats,
// behind a pgcloak with access rules and the audit log, keys in Vault.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// accessEnv is pgcloak with access rules and the audit log.
type accessEnv struct {
	*encEnv
	sfx    string
	audit  string    // the audit log file
	direct *pgx.Conn // straight to PostgreSQL, for the oracle
}

// The roles of the env, without their suffix. support is a member of app
// (for SET ROLE); dba is a superuser.
var accessRoles = []string{"app", "support", "analytics", "backup", "lookup", "dba", "nobody"}

// maskTypes are the columns of m_types: name, logical type, the value
// stored (text input), and a fixed mask value of the type.
var maskTypes = []struct{ name, typ, value, fixed string }{
	{"c_text", "text", "taro@example.jp", "REDACTED"},
	{"c_varchar", "varchar(64)", "taro@example.jp", "REDACTED"},
	{"c_bpchar", "char(8)", "ab12", "XXXX"},
	{"c_int2", "int2", "-1234", "0"},
	{"c_int4", "int4", "123456", "0"},
	{"c_int8", "int8", "9223372036854775807", "0"},
	{"c_numeric", "numeric", "12345.67", "0"},
	{"c_float8", "float8", "1.5", "0"},
	{"c_bool", "bool", "true", "false"},
	{"c_date", "date", "2024-02-29", "1900-01-01"},
	{"c_timestamp", "timestamp", "2024-02-29 12:34:56", "1900-01-01 00:00:00"},
	{"c_timestamptz", "timestamptz", "2024-02-29 12:34:56+09", "2000-01-01 00:00:00+00"},
	{"c_uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000"},
	{"c_jsonb", "jsonb", `{"a": 1}`, "{}"},
	{"c_bytea", "bytea", `\xdeadbeef`, `\x00`},
}

// maskFormats are the masking roles of m_types: each sees every column
// its format applies to with that format (the others are denied).
var maskFormats = map[string]struct {
	spec    string
	applies string // the types, "" for all
}{
	"m_null":  {`"null"`, ""},
	"m_token": {"token", ""},
	"m_fixed": {"fixed", ""},
	"m_first": {"first:2", "text varchar(64) char(8) int2 int4 int8 numeric uuid"},
	"m_last4": {"last4", "text varchar(64) char(8) int2 int4 int8 numeric uuid"},
	"m_email": {"email", "text varchar(64)"},
}

func newAccessEnv(t *testing.T) *accessEnv {
	t.Helper()
	sfx := randomSuffix()
	r := func(name string) string { return name + "_" + sfx }
	pg := sharedPG(t)
	var roles, grants strings.Builder
	var all []string
	for _, name := range accessRoles {
		all = append(all, r(name))
	}
	for name := range maskFormats {
		all = append(all, r(name))
	}
	for _, role := range all {
		attrs := "LOGIN PASSWORD 'pw'"
		if strings.HasPrefix(role, "dba_") {
			attrs += " SUPERUSER"
		}
		fmt.Fprintf(&roles, "CREATE ROLE %s %s;\n", role, attrs)
		fmt.Fprintf(&grants, "GRANT SELECT, INSERT, UPDATE, DELETE ON customers, m_types TO %s;\n", role)
	}
	// Roles are the cluster's: they go when the test ends, after its
	// database.
	t.Cleanup(func() {
		for _, role := range all {
			_ = pg.ExecDB("postgres", "DROP ROLE IF EXISTS "+role)
		}
	})
	var mcols, mrules strings.Builder
	for _, c := range maskTypes {
		fmt.Fprintf(&mcols, ", %s bytea", c.name)
	}
	schema := fmt.Sprintf(`CREATE TABLE customers (id int PRIMARY KEY, email bytea, card bytea, birth_date bytea, score bytea, note text);
CREATE TABLE m_types (id int PRIMARY KEY%s);
%s%sGRANT %s TO %s;
`, mcols.String(), roles.String(), grants.String(), r("app"), r("support"))

	var tables strings.Builder
	tables.WriteString(`public.customers:
  email: {type: text, key: pii, mode: deterministic}
  card: {type: varchar(19), key: pii}
  birth_date: {type: date, key: pii}
  score: {type: int4, key: pii}
public.m_types:
`)
	for _, c := range maskTypes {
		fmt.Fprintf(&tables, "  %s: {type: %s, key: pii}\n", c.name, c.typ)
		fmt.Fprintf(&mrules, "    public.m_types.%s:\n      %s: {read: plaintext, write: true}\n", c.name, r("app"))
		for role, f := range maskFormats {
			if f.applies != "" && !strings.Contains(" "+f.applies+" ", " "+c.typ+" ") {
				continue
			}
			spec := f.spec
			if role == "m_fixed" {
				spec = fmt.Sprintf("%q", "fixed:"+c.fixed)
			}
			fmt.Fprintf(&mrules, "      %s: %s\n", r(role), spec)
		}
	}
	extra := fmt.Sprintf(`access:
  default: deny
  roles:
    %[1]s: {read: plaintext, write: true}
    %[2]s: token
    %[3]s: ciphertext
    %[4]s: {read: deny, search: true}
  tables:
    public.customers:
      %[5]s: "null"
    public.customers.email:
      %[5]s: {read: masked, mask: email, search: true}
    public.customers.card:
      %[5]s: last4
    public.customers.birth_date:
      %[5]s: {read: masked, mask: "fixed:1900-01-01"}
    public.customers.score:
      %[5]s: {read: plaintext, application_name: [desk]}
%[6]saudit:
  file: audit.log
  transit_key: pgcloak-audit-%[7]s
`, r("app"), r("analytics"), r("backup"), r("lookup"), r("support"), mrules.String(), sfx)
	e := newEncEnv(t, encEnvOptions{schema: schema, tables: tables.String(), extra: extra})
	a := &accessEnv{encEnv: e, sfx: sfx, audit: filepath.Join(e.dir, "audit.log")}
	// The data, written by the application role through pgcloak.
	app := a.as(t, "app")
	for _, row := range []string{
		`INSERT INTO customers VALUES (1, 'taro@example.jp', '4111-1111-1111-5678', '1980-05-17', 42, 'first')`,
		`INSERT INTO customers VALUES (2, 'hanako@example.jp', '5500-0000-0000-0004', '1990-12-01', 7, 'second')`,
		`INSERT INTO customers VALUES (3, 'taro@example.jp', NULL, NULL, NULL, 'same e-mail as 1')`,
		`INSERT INTO customers VALUES (99, 'keep@example.jp', NULL, NULL, NULL, 'for refused deletes')`,
	} {
		a.exec(t, app, row)
	}
	names, vals := []string{"id"}, []string{"1"}
	for _, c := range maskTypes {
		names = append(names, c.name)
		vals = append(vals, "'"+strings.ReplaceAll(c.value, "'", "''")+"'")
	}
	a.exec(t, app, fmt.Sprintf("INSERT INTO m_types (%s) VALUES (%s)", strings.Join(names, ", "), strings.Join(vals, ", ")))
	return a
}

// role is the env's name of a role.
func (a *accessEnv) role(name string) string { return name + "_" + a.sfx }

// dsnAs connects through pgcloak as a role of the env.
func (a *accessEnv) dsnAs(name string, params ...string) string {
	s := fmt.Sprintf("postgres://%s:pw@%s/%s?sslmode=disable", url.PathEscape(a.role(name)), a.addr, a.db)
	for i := 0; i+1 < len(params); i += 2 {
		s += "&" + params[i] + "=" + url.QueryEscape(params[i+1])
	}
	return s
}

func (a *accessEnv) as(t *testing.T, name string, params ...string) *pgx.Conn {
	t.Helper()
	return connect(t, a.dsnAs(name, params...))
}

// exec runs sql (simple protocol) and fails the test on an error.
func (a *accessEnv) exec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if _, err := c.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// result is a statement's result as raw wire values.
type result struct {
	oids []uint32
	rows [][][]byte
	err  error
}

// simple runs sql with the simple protocol (text results).
func simple(c *pgx.Conn, sql string) result {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rs, err := c.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return result{err: err}
	}
	var r result
	for _, x := range rs {
		if x.Err != nil {
			return result{err: x.Err}
		}
		r.oids, r.rows = oidsOf(x.FieldDescriptions), append(r.rows, x.Rows...)
	}
	return r
}

// extended runs sql with the extended protocol (unnamed statement), text
// parameters, and results in format.
func extended(c *pgx.Conn, sql string, format int16, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	params := make([][]byte, len(args))
	for i, s := range args {
		params[i] = []byte(s)
	}
	x := c.PgConn().ExecParams(ctx, sql, params, nil, nil, []int16{format}).Read()
	if x.Err != nil {
		return result{err: x.Err}
	}
	return result{oids: oidsOf(x.FieldDescriptions), rows: x.Rows}
}

// prepared prepares sql as a named statement (Describe), checks nothing,
// and executes it with results in format; oids are the Describe's.
func prepared(c *pgx.Conn, name, sql string, format int16) result {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	sd, err := c.PgConn().Prepare(ctx, name, sql, nil)
	if err != nil {
		return result{err: err}
	}
	x := c.PgConn().ExecPrepared(ctx, name, nil, nil, []int16{format}).Read()
	if x.Err != nil {
		return result{err: x.Err}
	}
	r := result{oids: oidsOf(sd.Fields), rows: x.Rows}
	if got := oidsOf(x.FieldDescriptions); fmt.Sprint(got) != fmt.Sprint(r.oids) {
		r.err = fmt.Errorf("Describe said types %v, the rows came as %v", r.oids, got)
	}
	return r
}

func oidsOf(fds []pgconn.FieldDescription) []uint32 {
	out := make([]uint32, len(fds))
	for i, f := range fds {
		out[i] = f.DataTypeOID
	}
	return out
}

// oracle asks PostgreSQL itself (directly) how it sends values of types:
// SELECT $1::T1, … in format, the values given as text (nil: NULL).
func (a *accessEnv) oracle(t *testing.T, types []string, vals []*string, format int16) ([]uint32, [][]byte) {
	t.Helper()
	var sel []string
	params := make([][]byte, len(vals))
	for i, ty := range types {
		sel = append(sel, fmt.Sprintf("$%d::%s", i+1, ty))
		if vals[i] != nil {
			params[i] = []byte(*vals[i])
		}
	}
	d := a.directConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	x := d.PgConn().ExecParams(ctx, "SELECT "+strings.Join(sel, ", "), params, nil, nil, []int16{format}).Read()
	if x.Err != nil {
		t.Fatalf("oracle SELECT %s: %v", strings.Join(sel, ", "), x.Err)
	}
	return oidsOf(x.FieldDescriptions), x.Rows[0]
}

// directConn is a superuser connection straight to PostgreSQL, with the
// session settings pgcloak's sessions have by default.
func (a *accessEnv) directConn(t *testing.T) *pgx.Conn {
	t.Helper()
	if a.direct == nil {
		a.direct = connect(a.t, a.directDSN())
	}
	return a.direct
}

// wantDenied fails t unless err is pgcloak's 42501 naming column.
func wantDenied(t *testing.T, what string, err error, column string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "pgcloak: permission denied for column "+column) {
		t.Errorf("%s: error %v, want 42501 naming %s", what, err, column)
	}
}
