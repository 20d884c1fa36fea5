package integration

import (
	"os/exec"
	"testing"
)

// pythonForPsycopg2 is Debian's Python, which has python3-psycopg2 (a
// Python in PATH, e.g. pyenv's, may not).
const pythonForPsycopg2 = "/usr/bin/python3"

// TestMatrixPsycopg2 runs the client matrix with psycopg2
// (testdata/clients/matrix.py): %s parameters, which psycopg2 interpolates
// client-side into literals with casts ('…'::date, '\x…'::bytea,
// 'NaN'::float …), sent with the simple protocol; the session's TimeZone
// comes from PGTZ. The rows are read with a plain cursor, then with a
// server-side cursor (DECLARE, FETCH FORWARD 3).
func TestMatrixPsycopg2(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command(pythonForPsycopg2, "-c", "import psycopg2").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import psycopg2 (%v: %s); to install: apt-get install -y python3 python3-psycopg2", pythonForPsycopg2, err, out)
	}
	m := newMatrixEnv(t)
	rows := matrixRows(false)
	dir := matrixClientDir(t)
	for _, mode := range []string{"plain", "cursor"} {
		t.Run(mode, func(t *testing.T) {
			m.reset(t)
			run := func(dsn, table string) matrixResult {
				plan := writeMatrixPlan(t, table, matrixPlan(table, rows))
				return runMatrixProgram(t, dir, matrixEnviron("PGTZ=Asia/Tokyo"), pythonForPsycopg2, "matrix.py", dsn, plan, mode)
			}
			cloak := run(m.dsn(), matrixCloak)
			oracle := run(m.directDSN(), matrixPlain)
			m.verify(t, cloak, oracle, rows)
		})
	}
}
