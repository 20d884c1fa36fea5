package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// OIDs of the types the access tests see.
const (
	oidBytea   = 17
	oidInt4    = 23
	oidText    = 25
	oidDate    = 1082
	oidVarchar = 1043
)

func sp(s string) *string { return &s }

// TestAccessRules: each role sees what its rule says, for SELECT in the
// simple and extended protocols, text and binary, prepared statements
// (Describe), RETURNING, cursors and COPY TO; writes and searches are
// refused where the rules say so, before anything reaches the server; SET
// ROLE and SET SESSION AUTHORIZATION change nothing; psql and psycopg2 see
// the same; the audit log holds a record for every statement that
// decrypted or was denied, and verifies until a line is tampered with.
func TestAccessRules(t *testing.T) {
	t.Parallel()
	a := newAccessEnv(t)
	const sel = "SELECT email, card, birth_date, score FROM customers WHERE id = 1"
	types := []string{"text", "varchar(19)", "date", "int4"}
	tokenRe := regexp.MustCompile(`^[0-9a-f]{32}$`)

	// Statements that deliver protected values, by role: the audit log must
	// hold one read record for each.
	reads := map[string]int{}

	t.Run("outcomes", func(t *testing.T) {
		conns := map[string]func() []result{}
		for _, role := range []string{"app", "support", "analytics", "backup", "dba", "nobody", "lookup"} {
			c := a.as(t, role)
			conns[role] = func() []result {
				return []result{simple(c, sel), extended(c, sel, 0), extended(c, sel, 1), prepared(c, "p_"+role, sel, 1)}
			}
		}
		modes := []string{"simple", "extended text", "extended binary", "prepared binary"}
		for role, want := range map[string][]*string{
			"app":     {sp("taro@example.jp"), sp("4111-1111-1111-5678"), sp("1980-05-17"), sp("42")},
			"support": {sp("t***@example.jp"), sp("***************5678"), sp("1900-01-01"), nil},
		} {
			for i, r := range conns[role]() {
				if r.err != nil {
					t.Errorf("%s, %s: %v", role, modes[i], r.err)
					continue
				}
				reads[role]++
				format := int16(0)
				if i >= 2 {
					format = 1
				}
				oids, vals := a.oracle(t, types, want, format)
				if fmt.Sprint(r.oids) != fmt.Sprint(oids) {
					t.Errorf("%s, %s: types %v, want %v", role, modes[i], r.oids, oids)
				}
				if len(r.rows) != 1 || fmt.Sprintf("%q", r.rows[0]) != fmt.Sprintf("%q", vals) {
					t.Errorf("%s, %s: rows %q, want %q", role, modes[i], r.rows, vals)
				}
			}
		}
		// analytics: keyed-hash tokens as text; equal e-mails, equal tokens.
		c := a.as(t, "analytics")
		for i, r := range conns["analytics"]() {
			reads["analytics"]++
			if r.err != nil || fmt.Sprint(r.oids) != fmt.Sprint([]uint32{oidText, oidText, oidText, oidText}) || len(r.rows) != 1 {
				t.Errorf("analytics, %s: %v, types %v, rows %q", modes[i], r.err, r.oids, r.rows)
				continue
			}
			for _, v := range r.rows[0] {
				if !tokenRe.Match(v) {
					t.Errorf("analytics, %s: %q is not a token", modes[i], v)
				}
			}
		}
		toks := simple(c, "SELECT email FROM customers WHERE id IN (1, 2, 3) ORDER BY id")
		reads["analytics"]++
		if toks.err != nil || len(toks.rows) != 3 || !bytes.Equal(toks.rows[0][0], toks.rows[2][0]) || bytes.Equal(toks.rows[0][0], toks.rows[1][0]) {
			t.Errorf("analytics tokens of rows 1, 2, 3 (1 and 3 equal): %v %q", toks.err, toks.rows)
		}
		// backup: the stored bytes as bytea, exactly as directly.
		direct := extended(a.directConn(t), sel, 1)
		for i, r := range conns["backup"]() {
			reads["backup"]++
			if r.err != nil || fmt.Sprint(r.oids) != fmt.Sprint([]uint32{oidBytea, oidBytea, oidBytea, oidBytea}) || len(r.rows) != 1 {
				t.Errorf("backup, %s: %v, types %v", modes[i], r.err, r.oids)
				continue
			}
			for k, v := range r.rows[0] {
				raw := v
				if i < 2 {
					raw, _ = hex.DecodeString(strings.TrimPrefix(string(v), `\x`))
				}
				if !bytes.Equal(raw, direct.rows[0][k]) || !bytes.HasPrefix(raw, []byte("PGC")) {
					t.Errorf("backup, %s, column %d: %q, want the stored ciphertext", modes[i], k+1, v)
				}
			}
		}
		// dba (a superuser), a role without rules and lookup may not read.
		for _, role := range []string{"dba", "nobody", "lookup"} {
			for i, r := range conns[role]() {
				wantDenied(t, role+", "+modes[i], r.err, "public.customers.email")
			}
		}
		// What cannot be read can still be left out.
		if r := simple(a.as(t, "dba"), "SELECT id, note FROM customers WHERE id = 1"); r.err != nil || len(r.rows) != 1 {
			t.Errorf("dba reading unprotected columns: %v", r.err)
		}
	})

	t.Run("search without read", func(t *testing.T) {
		const q = "SELECT id FROM customers WHERE email = $1 ORDER BY id"
		for _, role := range []string{"lookup", "support", "app"} {
			r := extended(a.as(t, role), q, 0, "taro@example.jp")
			if r.err != nil || len(r.rows) != 2 || string(r.rows[0][0]) != "1" || string(r.rows[1][0]) != "3" {
				t.Errorf("%s searching by e-mail: %v %q, want ids 1 and 3", role, r.err, r.rows)
			}
		}
		for _, role := range []string{"analytics", "backup", "nobody"} {
			wantDenied(t, role+" searching", extended(a.as(t, role), q, 0, "taro@example.jp").err, "public.customers.email")
			wantDenied(t, role+" searching with a literal", simple(a.as(t, role), "SELECT id FROM customers WHERE email = 'taro@example.jp'").err, "public.customers.email")
		}
	})

	t.Run("returning and writes", func(t *testing.T) {
		d := a.directConn(t)
		stored := func() string {
			r := simple(d, "SELECT count(*), md5(string_agg(id || ':' || coalesce(encode(email, 'hex'), '') || coalesce(encode(card, 'hex'), ''), ',' ORDER BY id)) FROM customers")
			return fmt.Sprintf("%q", r.rows)
		}
		before := stored()
		s := a.as(t, "support")
		a.exec(t, s, "BEGIN")
		r := simple(s, "DELETE FROM customers WHERE id = 2 RETURNING id, email, card")
		reads["support"]++
		if r.err != nil || len(r.rows) != 1 || string(r.rows[0][1]) != "h***@example.jp" || string(r.rows[0][2]) != "***************0004" {
			t.Errorf("support DELETE … RETURNING: %v %q", r.err, r.rows)
		}
		a.exec(t, s, "ROLLBACK")
		// Refused before anything reaches the server: the rows stay.
		dba := a.as(t, "dba")
		wantDenied(t, "dba DELETE … RETURNING email", simple(dba, "DELETE FROM customers WHERE id = 99 RETURNING email").err, "public.customers.email")
		for _, w := range []struct{ role, sql, col string }{
			{"support", "INSERT INTO customers (id, email) VALUES (10, 'x@example.jp')", "public.customers.email"},
			{"support", "UPDATE customers SET card = '0000' WHERE id = 1", "public.customers.card"},
			{"support", "UPDATE customers SET card = NULL WHERE id = 1", "public.customers.card"},
			{"lookup", "UPDATE customers SET email = email WHERE id = 1", "public.customers.email"},
			{"analytics", "INSERT INTO customers (id, score) VALUES (11, 5)", "public.customers.score"},
		} {
			wantDenied(t, w.role+": "+w.sql, simple(a.as(t, w.role), w.sql).err, w.col)
			wantDenied(t, w.role+": "+w.sql+" (extended)", extended(a.as(t, w.role), w.sql, 0).err, w.col)
		}
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := s.PgConn().CopyFrom(ctx, strings.NewReader("12\tz@example.jp\n"), "COPY customers (id, email) FROM STDIN")
		wantDenied(t, "support COPY FROM", err, "public.customers.email")
		if after := stored(); after != before {
			t.Errorf("refused writes changed the table: %s, then %s", before, after)
		}
		// The session goes on after a refusal, and writes what it may.
		if r := simple(s, "UPDATE customers SET note = 'seen' WHERE id = 1"); r.err != nil {
			t.Errorf("support updating an unprotected column: %v", r.err)
		}
	})

	t.Run("cursor and copy", func(t *testing.T) {
		s := a.as(t, "support")
		a.exec(t, s, "BEGIN")
		a.exec(t, s, "DECLARE k CURSOR FOR SELECT id, email, birth_date FROM customers WHERE id < 3 ORDER BY id")
		r := simple(s, "FETCH 2 FROM k")
		reads["support"]++
		if r.err != nil || fmt.Sprint(r.oids) != fmt.Sprint([]uint32{oidInt4, oidText, oidDate}) || len(r.rows) != 2 ||
			string(r.rows[0][1]) != "t***@example.jp" || string(r.rows[1][1]) != "h***@example.jp" || string(r.rows[1][2]) != "1900-01-01" {
			t.Errorf("support FETCH: %v %v %q", r.err, r.oids, r.rows)
		}
		a.exec(t, s, "COMMIT")
		dba := a.as(t, "dba")
		a.exec(t, dba, "BEGIN")
		wantDenied(t, "dba DECLARE", simple(dba, "DECLARE k CURSOR FOR SELECT card FROM customers").err, "public.customers.card")
		a.exec(t, dba, "ROLLBACK")

		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		var out bytes.Buffer
		if _, err := s.PgConn().CopyTo(ctx, &out, "COPY (SELECT id, email, card, birth_date FROM customers WHERE id < 3 ORDER BY id) TO STDOUT"); err != nil {
			t.Errorf("support COPY TO: %v", err)
		}
		reads["support"]++
		if want := "1\tt***@example.jp\t***************5678\t1900-01-01\n2\th***@example.jp\t***************0004\t1900-01-01\n"; out.String() != want {
			t.Errorf("support COPY TO:\n%s\nwant\n%s", out.String(), want)
		}
		out.Reset()
		b := a.as(t, "backup")
		if _, err := b.PgConn().CopyTo(ctx, &out, "COPY (SELECT id, email FROM customers WHERE id = 1) TO STDOUT"); err != nil || !strings.HasPrefix(out.String(), "1\t\\\\x504743") {
			t.Errorf("backup COPY TO: %v %q, want the ciphertext as bytea", err, out.String())
		}
		reads["backup"]++
		// NULL cannot be written into COPY data, and binary COPY has no
		// types: both refused before the COPY starts.
		_, err := s.PgConn().CopyTo(ctx, &out, "COPY customers TO STDOUT")
		if err == nil || !strings.Contains(err.Error(), "mask null") {
			t.Errorf("support COPY of a null-masked column: %v", err)
		}
		_, err = a.as(t, "analytics").PgConn().CopyTo(ctx, &out, "COPY customers (id, score) TO STDOUT (FORMAT binary)")
		if err == nil || !strings.Contains(err.Error(), "binary format") {
			t.Errorf("analytics binary COPY of tokens: %v", err)
		}
		wantDenied(t, "nobody COPY TO", func() error {
			_, err := a.as(t, "nobody").PgConn().CopyTo(ctx, &out, "COPY customers TO STDOUT")
			return err
		}(), "public.customers.email")
	})

	t.Run("view", func(t *testing.T) {
		// A view made around pgcloak: its columns are the base table's.
		a.exec(t, a.directConn(t), "CREATE VIEW cust_v AS SELECT id, email FROM customers; GRANT SELECT ON cust_v TO "+a.role("support")+", "+a.role("nobody"))
		r := simple(a.as(t, "support"), "SELECT * FROM cust_v WHERE id = 1")
		reads["support"]++
		if r.err != nil || len(r.rows) != 1 || string(r.rows[0][1]) != "t***@example.jp" {
			t.Errorf("support through a view: %v %q", r.err, r.rows)
		}
		wantDenied(t, "nobody through a view", simple(a.as(t, "nobody"), "SELECT * FROM cust_v").err, "public.customers.email")

		// A cursor opened by server-side code: pgcloak sees only the FETCH,
		// and learns what it returns when the rows are already coming.
		a.exec(t, a.directConn(t), `CREATE FUNCTION open_c() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'c'; BEGIN OPEN c FOR SELECT id, email FROM customers ORDER BY id; RETURN c; END $$`)
		s := a.as(t, "support")
		a.exec(t, s, "BEGIN")
		a.exec(t, s, "SELECT open_c()")
		r = simple(s, "FETCH 1 FROM c")
		reads["support"]++
		if r.err != nil || string(r.rows[0][1]) != "t***@example.jp" {
			t.Errorf("support FETCH from a server-side cursor: %v %q", r.err, r.rows)
		}
		n := a.as(t, "nobody")
		a.exec(t, n, "BEGIN")
		a.exec(t, n, "SELECT open_c()")
		err := simple(n, "FETCH 1 FROM c").err
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Severity != "FATAL" || pe.Code != "42501" || !strings.Contains(pe.Detail, "session ends rather than return the rows") {
			t.Errorf("nobody FETCH from a server-side cursor: %v, want FATAL 42501", err)
		}
		if !n.PgConn().IsClosed() && simple(n, "SELECT 1").err == nil {
			t.Error("the session goes on after the FATAL")
		}
	})

	t.Run("role fixed at login", func(t *testing.T) {
		// support is a member of app, which reads plaintext: switching to
		// it changes PostgreSQL's checks, not what pgcloak shows.
		s := a.as(t, "support")
		a.exec(t, s, "SET ROLE "+a.role("app"))
		r := simple(s, "SELECT current_user, email FROM customers WHERE id = 1")
		reads["support"]++
		if r.err != nil || string(r.rows[0][0]) != a.role("app") || string(r.rows[0][1]) != "t***@example.jp" {
			t.Errorf("support after SET ROLE app: %v %q", r.err, r.rows)
		}
		if r := simple(s, "UPDATE customers SET email = 'x@example.jp' WHERE id = 1"); r.err == nil {
			t.Error("support after SET ROLE app could write the e-mail")
		}
		dba := a.as(t, "dba")
		a.exec(t, dba, "SET SESSION AUTHORIZATION "+a.role("app"))
		r = simple(dba, "SELECT session_user, email FROM customers WHERE id = 1")
		wantDenied(t, "dba after SET SESSION AUTHORIZATION app", r.err, "public.customers.email")
		// A rule narrowed to an application_name applies to sessions that
		// start with it, and only from the startup packet.
		desk := a.as(t, "support", "application_name", "desk")
		if r := simple(desk, sel); r.err != nil || string(r.rows[0][0]) != "t***@example.jp" || string(r.rows[0][3]) != "42" {
			t.Errorf("support with application_name desk: %v %q, want the score in plaintext", r.err, r.rows)
		}
		a.exec(t, s, "SET application_name = 'desk'")
		if r := simple(s, sel); r.err != nil || r.rows[0][3] != nil {
			t.Errorf("support after SET application_name: %v %q, want the score still NULL", r.err, r.rows)
		}
		reads["support"] += 2
	})

	t.Run("drivers", func(t *testing.T) {
		psql := harness.RequireBinary(t, "psql")
		run := func(name string, args ...string) (string, error) {
			c := exec.Command(args[0], args[1:]...)
			c.Env = append(os.Environ(), "PGTZ=UTC")
			out, err := c.CombinedOutput()
			return string(out), err
		}
		q := "SELECT email, card, birth_date, score FROM customers WHERE id = 1"
		out, err := run("psql", psql, "-X", "-A", "-t", "-d", a.dsnAs("support"), "-c", q)
		reads["support"]++
		if err != nil || out != "t***@example.jp|***************5678|1900-01-01|\n" {
			t.Errorf("psql as support: %v %q", err, out)
		}
		out, _ = run("psql", psql, "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", a.dsnAs("dba"), "-c", q)
		if !strings.Contains(out, "ERROR:  42501: pgcloak: permission denied for column public.customers.email") {
			t.Errorf("psql as dba: %q", out)
		}
		if _, err := exec.Command(pythonForPsycopg2, "-c", "import psycopg2").CombinedOutput(); err != nil {
			t.Fatalf("%s cannot import psycopg2 (%v); to install: apt-get install -y python3-psycopg2", pythonForPsycopg2, err)
		}
		script := `
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
try:
    cur.execute("SELECT email, card, birth_date, score FROM customers WHERE id = %s", (1,))
    print(repr(cur.fetchall()))
except psycopg2.Error as e:
    print(e.pgcode, e.pgerror.splitlines()[0])
`
		out, err = run("python", pythonForPsycopg2, "-c", script, a.dsnAs("support"))
		reads["support"]++
		if err != nil || out != "[('t***@example.jp', '***************5678', datetime.date(1900, 1, 1), None)]\n" {
			t.Errorf("psycopg2 as support: %v %q", err, out)
		}
		out, err = run("python", pythonForPsycopg2, "-c", script, a.dsnAs("nobody"))
		if err != nil || !strings.HasPrefix(out, "42501 ERROR:  pgcloak: permission denied for column public.customers.email") {
			t.Errorf("psycopg2 as nobody: %v %q", err, out)
		}
	})

	t.Run("masks per type", func(t *testing.T) {
		for role, f := range maskFormats {
			c := a.as(t, role)
			for _, col := range maskTypes {
				if f.applies != "" && !strings.Contains(" "+f.applies+" ", " "+col.typ+" ") {
					wantDenied(t, role+" on "+col.typ, simple(c, "SELECT "+col.name+" FROM m_types").err, "public.m_types."+col.name)
					continue
				}
				want, outType := expectMask(role, col.typ, col.value, col.fixed)
				for _, format := range []int16{0, 1} {
					r := extended(c, "SELECT "+col.name+" FROM m_types WHERE id = 1", format)
					reads[role]++
					if r.err != nil || len(r.rows) != 1 {
						t.Errorf("%s on %s, format %d: %v", role, col.typ, format, r.err)
						continue
					}
					got := r.rows[0][0]
					if role == "m_token" {
						if r.oids[0] != oidText || !tokenRe.Match(got) {
							t.Errorf("token on %s, format %d: %v %q", col.typ, format, r.oids, got)
						}
						continue
					}
					oids, vals := a.oracle(t, []string{outType}, []*string{want}, format)
					if r.oids[0] != oids[0] || !bytes.Equal(got, vals[0]) || (got == nil) != (vals[0] == nil) {
						t.Errorf("%s on %s, format %d: %v %q, want %v %q", role, col.typ, format, r.oids, got, oids, vals[0])
					}
				}
			}
		}
		// Tokens are the keyring's: the same value in two columns, the
		// same token.
		r := simple(a.as(t, "m_token"), "SELECT c_text, c_varchar FROM m_types")
		reads["m_token"]++
		if r.err != nil || !bytes.Equal(r.rows[0][0], r.rows[0][1]) {
			t.Errorf("tokens of equal text and varchar values: %v %q", r.err, r.rows)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		mfs, err := a.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				got[mf.GetName()+labels(m)] += m.GetCounter().GetValue()
			}
		}
		for _, k := range []string{
			`pgcloak_protected_values_total{column=public.customers.email,outcome=masked,role=` + a.role("support") + `}`,
			`pgcloak_protected_values_total{column=public.customers.email,outcome=plaintext,role=` + a.role("app") + `}`,
			`pgcloak_protected_values_total{column=public.customers.email,outcome=ciphertext,role=` + a.role("backup") + `}`,
			`pgcloak_protected_values_total{column=public.customers.email,outcome=encrypted,role=` + a.role("app") + `}`,
			`pgcloak_access_refusals_total{column=public.customers.email,reason=read_denied,role=` + a.role("dba") + `}`,
			`pgcloak_access_refusals_total{column=public.customers.card,reason=write_denied,role=` + a.role("support") + `}`,
			`pgcloak_access_refusals_total{column=public.customers.email,reason=search_denied,role=` + a.role("analytics") + `}`,
		} {
			if got[k] < 1 {
				t.Errorf("%s = %v, want at least 1", k, got[k])
			}
		}
	})

	t.Run("audit", func(t *testing.T) {
		a.stop() // the close record
		data, err := os.ReadFile(a.audit)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		counts := map[string]int{}
		denials := map[string]int{}
		for _, l := range lines {
			for _, role := range append(accessRoles, "m_null", "m_token", "m_fixed", "m_first", "m_last4", "m_email") {
				if strings.Contains(l, `"role":"`+a.role(role)+`"`) {
					if strings.Contains(l, `"event":"read"`) {
						counts[role]++
					} else if strings.Contains(l, `"event":"denied"`) {
						denials[role]++
					}
				}
			}
			for _, secret := range []string{"taro@", "hanako", "4111-1111", "1111-5678", "1980-05-17"} {
				if strings.Contains(l, secret) {
					t.Errorf("the audit log holds %q: %s", secret, l)
				}
			}
		}
		for role, n := range reads {
			if counts[role] != n {
				t.Errorf("%s: %d read records, want one per decrypting statement: %d", role, counts[role], n)
			}
		}
		for _, role := range []string{"dba", "nobody", "lookup", "support", "analytics"} {
			if denials[role] == 0 {
				t.Errorf("%s: no denied records", role)
			}
		}
		if !strings.Contains(string(data), `"outcome":"masked","mask":"email","values":1,"key_versions":[1]`) {
			t.Errorf("no masked e-mail record with its key version:\n%.2000s", data)
		}
		verify := func(files ...string) (int, string) {
			var out, errb bytes.Buffer
			code := cmd.RunAudit(append([]string{"verify", "--config", a.config, "--log-level", "warn"}, files...), &out, &errb)
			return code, out.String() + errb.String()
		}
		if code, out := verify(a.audit); code != 0 || !strings.HasPrefix(out, "OK ") {
			t.Fatalf("audit verify of the untouched log: exit %d\n%s", code, out)
		}
		// Each tampering is found at the line where it shows (line 1 is
		// the open record; the others are the statements above).
		dir := t.TempDir()
		forged := strings.Replace(lines[4], `"time":"20`, `"time":"21`, 1)
		for _, c := range []struct {
			name string
			edit func([]string) []string
			line int
		}{
			{"line deleted", func(l []string) []string { return append(l[:3:3], l[4:]...) }, 4},
			{"lines swapped", func(l []string) []string { l[3], l[4] = l[4], l[3]; return l }, 4},
			{"byte changed", func(l []string) []string { l[4] = forged; return l }, 5},
			{"tail truncated", func(l []string) []string { return l[:len(l)-2] }, len(lines) - 2},
			{"line forged without the key", func(l []string) []string {
				// A plausible record: the next seq, the right prev, a made-up mac.
				last := l[len(l)-2]
				seq := regexp.MustCompile(`"seq":(\d+)`).FindStringSubmatch(last)[1]
				mac := last[len(last)-66 : len(last)-2]
				var n int
				fmt.Sscan(seq, &n)
				fake := fmt.Sprintf(`{"seq":%d,"time":"2030-01-01T00:00:00Z","event":"read","role":"x","prev":"%s","mac":"%s"}`, n+1, mac, strings.Repeat("0", 64))
				return append(l[:len(l)-1:len(l)-1], fake, l[len(l)-1])
			}, len(lines)},
		} {
			file := dir + "/" + strings.ReplaceAll(c.name, " ", "_") + ".log"
			if err := os.WriteFile(file, []byte(strings.Join(c.edit(append([]string(nil), lines...)), "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := verify(file)
			if code != 1 || !strings.Contains(out, fmt.Sprintf("BROKEN %s:%d: ", file, c.line)) {
				t.Errorf("%s: exit %d, want 1 naming line %d:\n%s", c.name, code, c.line, out)
			}
		}
	})
}

// labels renders a metric's labels as {a=x,b=y}.
func labels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// expectMask is what a masking role sees of value (text input of typ), as
// the text input of the type the client sees (nil: NULL). It is the
// formats' definition, computed here independently of pgcloak.
func expectMask(role, typ, value, fixed string) (*string, string) {
	canonical := value
	if typ == "uuid" {
		canonical = strings.ToLower(value)
	}
	kept := typ == "text" || typ == "varchar(64)" || typ == "char(8)"
	outType := "text"
	if kept {
		outType = typ
	}
	star := func(s string, keepFirst, keepLast int) string {
		n := utf8.RuneCountInString(s)
		var b strings.Builder
		for i, r := range []rune(s) {
			if i < keepFirst || i >= n-keepLast {
				b.WriteRune(r)
			} else {
				b.WriteByte('*')
			}
		}
		return b.String()
	}
	switch role {
	case "m_null":
		return nil, typ
	case "m_fixed":
		return &fixed, typ
	case "m_first":
		s := star(canonical, 2, 0)
		return &s, outType
	case "m_last4":
		s := star(canonical, 0, 4)
		return &s, outType
	case "m_email":
		local, domain, _ := strings.Cut(canonical, "@")
		s := string([]rune(local)[:1]) + "***@" + domain
		return &s, typ
	}
	return nil, typ
}

// TestAccessClientCert: a rule narrowed to a client certificate applies to
// sessions whose certificate pgcloak verified with that CN, and to no other
// session of the role.
func TestAccessClientCert(t *testing.T) {
	t.Parallel()
	serverCA := harness.NewCA(t, "pgcloak server CA")
	clientCA := harness.NewCA(t, "pgcloak client CA")
	cert := serverCA.Issue(t, "127.0.0.1", "localhost")
	e := newEncEnv(t, encEnvOptions{
		schema: "CREATE TABLE t (id int PRIMARY KEY, secret bytea)",
		tables: "public.t:\n  secret: {type: text, key: pii}\n",
		extra: fmt.Sprintf(`tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
access:
  roles:
    %s: {read: plaintext, write: true, client_cert: [desk-1]}
`, cert.CertFile, cert.KeyFile, clientCA.CertFile, harness.SuperUser),
	})
	as := func(cn string) string {
		c := clientCA.IssueClient(t, cn)
		return e.dsn("sslmode", "verify-full", "sslrootcert", serverCA.CertFile, "sslcert", c.CertFile, "sslkey", c.KeyFile)
	}
	desk := connect(t, as("desk-1"))
	if r := simple(desk, "INSERT INTO t VALUES (1, 'for desk-1'); SELECT secret FROM t"); r.err != nil || string(r.rows[0][0]) != "for desk-1" {
		t.Errorf("with certificate desk-1: %v %q", r.err, r.rows)
	}
	other := connect(t, as("desk-2"))
	wantDenied(t, "with certificate desk-2", simple(other, "SELECT secret FROM t").err, "public.t.secret")
}
