package integration

import (
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// jdbcJar is Debian's PostgreSQL JDBC driver (libpostgresql-jdbc-java).
const jdbcJar = "/usr/share/java/postgresql.jar"

// TestMatrixJDBC runs the client matrix with PgJDBC
// (testdata/clients/Matrix.java, run as a single-file source program):
// PreparedStatement setters and ResultSet getters, in a JVM whose time zone
// (sent as the session's TimeZone) is America/St_Johns. Each connection
// setting is a subtest: the default (unnamed statements, then named ones from
// the fifth execution), prepareThreshold=1 (named statements from the first,
// binary results), stringtype=unspecified (setString declares no type, a
// common setting) and both. preferQueryMode=simple is left out: some of the
// statements PgJDBC 42.5 inlines there are syntax errors against PostgreSQL
// itself.
func TestMatrixJDBC(t *testing.T) {
	t.Parallel()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java not found in PATH; to install: apt-get install -y openjdk-17-jdk-headless libpostgresql-jdbc-java")
	}
	if _, err := exec.LookPath("javac"); err != nil {
		t.Fatalf("javac not found in PATH: java runs Matrix.java from source only with a JDK; to install: apt-get install -y openjdk-17-jdk-headless")
	}
	if _, err := os.Stat(jdbcJar); err != nil {
		t.Fatalf("%v; to install: apt-get install -y libpostgresql-jdbc-java", err)
	}
	m := newMatrixEnv(t)
	rows := matrixRows(false)
	dir := matrixClientDir(t)
	for _, setting := range []string{"default", "prepareThreshold=1", "stringtype=unspecified", "stringtype=unspecified&prepareThreshold=1"} {
		t.Run(setting, func(t *testing.T) {
			m.reset(t)
			run := func(dsn, table string) matrixResult {
				plan := writeMatrixPlan(t, table, matrixPlan(table, rows))
				return runMatrixProgram(t, dir, matrixEnviron(), java, "-cp", jdbcJar, "Matrix.java", jdbcURL(t, dsn, setting), plan)
			}
			cloak := run(m.dsn(), matrixCloak)
			oracle := run(m.directDSN(), matrixPlain)
			m.verify(t, cloak, oracle, rows)
		})
	}
}

// jdbcURL turns a postgres:// URL into a jdbc:postgresql:// one, adding
// setting (key=value&…) unless it is "default".
func jdbcURL(t *testing.T, dsn, setting string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("user", u.User.Username())
	if p, ok := u.User.Password(); ok {
		q.Set("password", p)
	}
	if setting != "default" {
		for _, kv := range strings.Split(setting, "&") {
			k, v, _ := strings.Cut(kv, "=")
			q.Set(k, v)
		}
	}
	return "jdbc:postgresql://" + u.Host + u.Path + "?" + q.Encode()
}
