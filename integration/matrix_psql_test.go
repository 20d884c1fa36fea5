package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestMatrixPsql runs the client matrix with psql: every plan step as SQL
// with literals (psql has no parameters), then SELECTs under several
// DateStyle, TimeZone, extra_float_digits and bytea_output settings, input
// under a non-ISO DateStyle and in a session time zone, and literal
// spellings a person types. The output through pgcloak must be the output of
// the oracle table, byte for byte, and psql must report no error.
func TestMatrixPsql(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	rows := matrixRows(true)
	oracleOut := matrixComparePsql(t, m, "", matrixPsqlScript)
	if !strings.Contains(oracleOut, "山田太郎") || !strings.Contains(oracleOut, "== after the literal forms") {
		t.Errorf("the oracle output lacks the test values:\n%.3000s", oracleOut)
	}
	// The settings that change how values look, given at startup.
	for _, options := range []string{"-c extra_float_digits=-2 -c DateStyle=German -c TimeZone=Asia/Kolkata", "-c bytea_output=escape"} {
		matrixComparePsql(t, m, options, func(table string, _ []matrixRow) string {
			return strings.Replace(matrixSelect(table), " ORDER BY", " WHERE id < 100 ORDER BY", 1) + ";\n"
		})
	}
	m.checkStored(t, rows)
}

// matrixComparePsql runs the script made for each table through pgcloak and
// against the oracle, with PGOPTIONS set to options, and fails t where the
// output differs or psql reports an error. It returns the oracle's output.
func matrixComparePsql(t *testing.T, m *matrixEnv, options string, script func(table string, rows []matrixRow) string) string {
	t.Helper()
	rows := matrixRows(true)
	cloakOut, cloakErr := matrixPsql(t, m.dsn(), options, script(matrixCloak, rows))
	oracleOut, oracleErr := matrixPsql(t, m.directDSN(), options, script(matrixPlain, rows))
	if oracleErr != "" {
		t.Errorf("psql (PGOPTIONS=%q) against the oracle (plain PostgreSQL) reported errors, the test itself is wrong:\n%s", options, oracleErr)
	}
	if cloakErr != "" {
		t.Errorf("psql (PGOPTIONS=%q) through pgcloak reported errors:\n%s", options, cloakErr)
	}
	if cloakOut != oracleOut {
		t.Errorf("psql (PGOPTIONS=%q) output through pgcloak differs from the oracle's:\n%s", options, diffLines(cloakOut, oracleOut))
	}
	return oracleOut
}

// matrixPsqlScript is the psql script for table.
func matrixPsqlScript(table string, rows []matrixRow) string {
	var b strings.Builder
	for _, s := range matrixPlan(table, rows) {
		b.WriteString(matrixStepSQL(table, s) + ";\n")
	}
	sel := matrixSelect(table)
	first := strings.Replace(sel, " ORDER BY", " WHERE id < 100 ORDER BY", 1)
	fmt.Fprintf(&b, `\echo == defaults, TimeZone from PGTZ
%s;
SET DateStyle = 'SQL, DMY'; SET TimeZone = 'America/St_Johns'; SET extra_float_digits = 0;
\echo == SQL DMY, America/St_Johns, extra_float_digits 0
%s;
SET DateStyle = 'German'; SET TimeZone = 'Asia/Kathmandu'; SET extra_float_digits = -4;
\echo == German, Asia/Kathmandu, extra_float_digits -4
%s;
SET DateStyle = 'Postgres, YMD'; SET TimeZone = 'Europe/Berlin'; SET extra_float_digits = 3;
\echo == Postgres YMD, Europe/Berlin, extra_float_digits 3
%s;
RESET ALL;
`, sel, first, first, first)
	t := table
	for _, stmt := range []string{
		// Input under a non-ISO DateStyle and in the session's time zone.
		`SET DateStyle = 'SQL, DMY'`,
		`INSERT INTO T (id, note, c_date, c_timestamp, c_timestamptz) VALUES (501, 'DMY input', '31/12/1999', '1/2/2003 04:05:06.7', 'January 8, 1999 04:05:06 PST')`,
		`SET TimeZone = 'America/New_York'`,
		`INSERT INTO T (id, note, c_timestamptz, c_date, c_timestamp) VALUES (502, 'session zone', '2000-07-01 12:00:00', 'epoch', 'epoch')`,
		`RESET ALL`,
		// Literal spellings.
		`INSERT INTO T (id, note, c_text) VALUES (601, 'E string', E'tab\there\\back\nline \u00e9')`,
		`INSERT INTO T (id, note, c_text) VALUES (602, 'dollar quoted', $$it's $$)`,
		`INSERT INTO T (id, note, c_varchar) VALUES (603, 'U& string', U&'\0041\3042')`,
		`INSERT INTO T (id, note, c_int2, c_int4, c_int8, c_numeric, c_float8) VALUES (604, 'quoted numbers', ' -7 ', '007', '+42', '1e3', '  -1.5e-3 ')`,
		`INSERT INTO T (id, note, c_bool, c_float8) VALUES (605, 'bool and float spelling', 'yes', '-inf')`,
		`INSERT INTO T (id, note, c_uuid) VALUES (606, 'uuid spelling', '{A0EEBC99-9C0B4EF8-BB6D6BB9BD380A11}')`,
		`INSERT INTO T (id, note, c_bytea) VALUES (607, 'bytea escape format', 'a\000b\\c')`,
		`INSERT INTO T (id, note, c_date) VALUES (608, 'typed literal', DATE '2000-01-02')`,
		`INSERT INTO T (id, note, c_timestamptz, c_int4) VALUES (609, 'cast literal', '2000-01-01 00:00:00+00'::timestamptz, CAST('12' AS int4))`,
		`INSERT INTO T (id, note, c_jsonb) VALUES (610, 'jsonb normalised', '{"b": 1,   "a": [1.0, 2e2], "a": 3}')`,
		`INSERT INTO T (id, note, c_bpchar, c_numeric) VALUES (611, 'bpchar blanks cut', 'abcdefgh    ', '-0.000')`,
		`INSERT INTO T (id, note, c_text) VALUES (612, 'multi-statement', 'one') \; UPDATE T SET c_int8 = -5, c_text = 'two' WHERE id = 612`,
		`INSERT INTO T (id, note, c_int4, c_float8) VALUES (613, 'negative zero literals', -0, -0.0)`,
		`INSERT INTO T (id, note, c_int2, c_int4, c_int8) VALUES (614, 'decimals into integers round', 2.5, 1.5, -0.5)`,
		`INSERT INTO T (id, note, c_text, c_varchar, c_bpchar, c_numeric) VALUES (615, 'numbers into text', 1e3, 1.50, 007, 1e3)`,
	} {
		b.WriteString(strings.ReplaceAll(stmt, " T ", " "+t+" ") + ";\n")
	}
	fmt.Fprintf(&b, "\\echo == after the literal forms\n%s;\n", strings.Replace(sel, " ORDER BY", " WHERE id > 500 ORDER BY", 1))
	// Last, so that a session that cannot read escape-format bytea does
	// not hide the rest.
	fmt.Fprintf(&b, "SET bytea_output = 'escape';\n\\echo == bytea_output escape\n%s;\n", first)
	return b.String()
}

// matrixPsql runs `psql -X -A -t -q -f script` against dsn, in a session
// whose TimeZone (PGTZ) is Asia/Tokyo, with PGOPTIONS set to options, and
// returns its stdout and stderr.
func matrixPsql(t *testing.T, dsn, options, script string) (stdout, stderr string) {
	t.Helper()
	bin := harness.RequireBinary(t, "psql")
	file := filepath.Join(t.TempDir(), "matrix.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-X", "-A", "-t", "-q", "-d", dsn, "-f", file)
	cmd.Env = matrixEnviron("PGTZ=Asia/Tokyo", "PGCLIENTENCODING=UTF8", "PGOPTIONS="+options)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(&errb, "psql: %v\n", err)
	}
	// The script's path differs between the two runs.
	return out.String(), strings.ReplaceAll(errb.String(), file, "matrix.sql")
}

// diffLines lists the first lines where a and b differ, long lines cut.
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	shown := 0
	for i := 0; i < min(len(al), len(bl)) && shown < 20; i++ {
		if al[i] != bl[i] {
			shown++
			fmt.Fprintf(&out, "line %d\n  pgcloak: %s\n  oracle:  %s\n", i+1, showCell(&al[i], &bl[i]), showCell(&bl[i], &al[i]))
		}
	}
	if len(al) != len(bl) {
		fmt.Fprintf(&out, "%d lines through pgcloak, %d from the oracle; ", len(al), len(bl))
		if len(al) < len(bl) {
			fmt.Fprintf(&out, "the oracle goes on with %s\n", showCell(&bl[len(al)], nil))
		} else {
			fmt.Fprintf(&out, "pgcloak goes on with %s\n", showCell(&al[len(bl)], nil))
		}
	}
	return out.String()
}
