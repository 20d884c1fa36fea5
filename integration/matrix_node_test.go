package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMatrixNode runs the client matrix with node-postgres
// (testdata/clients/node/matrix.js): parameterised queries (every value in
// text format with no declared type, Buffers in binary format), once with
// unnamed statements and once with named prepared statements, in a process
// whose time zone is America/St_Johns. The pg package is installed with
// `npm ci` from package-lock.json when node_modules is missing.
func TestMatrixNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH; to install: apt-get install -y nodejs npm")
	}
	dir := filepath.Join(matrixClientDir(t), "node")
	matrixNpmCI(t, dir)
	m := newMatrixEnv(t)
	rows := matrixRows(false)
	for _, mode := range []string{"unnamed", "named"} {
		t.Run(mode, func(t *testing.T) {
			m.reset(t)
			run := func(dsn, table string) matrixResult {
				plan := writeMatrixPlan(t, table, matrixPlan(table, rows))
				return runMatrixProgram(t, dir, matrixEnviron(), node, "matrix.js", dsn, plan, mode)
			}
			cloak := run(m.dsn(), matrixCloak)
			oracle := run(m.directDSN(), matrixPlain)
			m.verify(t, cloak, oracle, rows)
		})
	}
}

// matrixNpmCI installs the node packages of dir unless node_modules is there.
func matrixNpmCI(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg", "package.json")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found in PATH (needed to install node-postgres in %s); to install: apt-get install -y nodejs npm", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--silent", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}
