package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// psql runs `psql -X` with args against AppDB through addr as TrustUser and
// returns its stdout and stderr. A non-zero exit fails t.
func psql(t *testing.T, addr string, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := harness.RequireBinary(t, "psql")
	host, port, _ := net.SplitHostPort(addr)
	conn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=20", host, port, harness.TrustUser, harness.AppDB)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-X", "-d", conn}, args...)...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C", "PGCLIENTENCODING=UTF8")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestPsqlMultiStatement sends two statements in one simple Query: psql
// prints both results.
func TestPsqlMultiStatement(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	out, _ := psql(t, addr, "-At", "-c", "SELECT 1; SELECT 2;")
	if out != "1\n2\n" {
		t.Errorf("psql -c 'SELECT 1; SELECT 2;' printed %q, want %q", out, "1\n2\n")
	}
	// A statement list that mixes commands and queries, as psql -c sends it
	// (one Query message).
	out, _ = psql(t, addr, "-At", "-c",
		"CREATE TEMP TABLE m (i int); INSERT INTO m VALUES (1), (2); SELECT sum(i) FROM m; SELECT 'x' || count(*) FROM m;")
	if want := "CREATE TABLE\nINSERT 0 2\n3\nx2\n"; out != want {
		t.Errorf("mixed statement list printed %q, want %q", out, want)
	}
}

// TestPsqlCopy copies a file into a table with \copy and back out to a file:
// both COPY directions through pgcloak, byte for byte.
func TestPsqlCopy(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	table := uniqueName(t, "psqlcopy")
	pg.MustExec(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, note text, n numeric)", table))

	// The COPY text format, in the canonical form PostgreSQL writes it, so
	// what comes out must equal what went in. Enough rows to span many
	// CopyData messages and relay buffers.
	var in bytes.Buffer
	in.WriteString("1\tplain\t1.5\n")
	in.WriteString("2\t\\N\t\\N\n")
	in.WriteString("3\ttab\\there, newline\\nand back\\\\slash\t-0.001\n")
	in.WriteString("4\tünïcödé ✓ 🐘\t12345678901234567890.123\n")
	in.WriteString("5\t\t0\n")
	for i := 6; i <= 20000; i++ {
		fmt.Fprintf(&in, "%d\trow %d %s\t%d.%d\n", i, i, strings.Repeat("z", i%97), i, i%10)
	}
	dir := t.TempDir()
	inFile, outFile := filepath.Join(dir, "in.tsv"), filepath.Join(dir, "out.tsv")
	if err := os.WriteFile(inFile, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	out, _ := psql(t, addr, "-At",
		"-c", fmt.Sprintf(`\copy %s FROM '%s'`, table, inFile),
		"-c", fmt.Sprintf(`\copy (SELECT * FROM %s ORDER BY id) TO '%s'`, table, outFile),
		"-c", fmt.Sprintf("SELECT count(*), sum(id) FROM %s", table))
	if want := "COPY 20000\nCOPY 20000\n20000|200010000\n"; out != want {
		t.Errorf("psql printed %q, want %q", out, want)
	}
	got, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in.Bytes()) {
		t.Errorf("\\copy out (%d bytes) differs from what \\copy in read (%d bytes); first difference at byte %d",
			len(got), in.Len(), firstDiff(got, in.Bytes()))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPsqlErrorThenQuery runs a script in one session: after an error (and
// after an error inside a transaction block) the session keeps working.
func TestPsqlErrorThenQuery(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	script := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(script, []byte(`\set VERBOSITY verbose
SELECT 1/0;
SELECT 'after error';
BEGIN;
SELECT 'in tx';
SELECT no_such_column FROM pg_class LIMIT 1;
SELECT 'aborted tx';
ROLLBACK;
SELECT 'after rollback', pg_backend_pid() = pg_backend_pid();
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut := psql(t, addr, "-At", "-v", "ON_ERROR_STOP=0", "-f", script)
	if want := "after error\nBEGIN\nin tx\nROLLBACK\nafter rollback|t\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	for _, want := range []string{
		"ERROR:  22012: division by zero",
		"ERROR:  42703: column \"no_such_column\" does not exist",
		"ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not hold %q:\n%s", want, errOut)
		}
	}
}
