package integration

import (
	"archive/tar"
	"compress/bzip2"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// The PostgreSQL source whose regression suite TestPostgresRegress runs:
// Debian bookworm's, from the Debian archive this machine reaches.
const (
	pgRegressVersion = "15.18"
	pgRegressURL     = "http://deb.debian.org/debian/pool/main/p/postgresql-15/postgresql-15_15.18.orig.tar.bz2"
	pgRegressSHA256  = "11df0df97fe3ea4ba9a791faaf39cee1d2fe571e78885b5b55d8517d27c323b4"
)

// pgRegressRefused are the regression tests that fail through pgcloak by
// design, each with the text of pgcloak's refusal their output must show.
var pgRegressRefused = map[string]string{
	// These tests turn standard_conforming_strings off; pgcloak's SQL
	// parser reads literals with it on (0A000, README).
	"strings": "pgcloak reads string literals with standard_conforming_strings on",
	"plpgsql": "pgcloak reads string literals with standard_conforming_strings on",
}

// TestPostgresRegress runs PostgreSQL's own regression suite (pg_regress
// with the parallel schedule, as `make installcheck` does) three times, on
// identical fresh clusters: directly, through pgcloak's plain relay, and
// through pgcloak with a protected table in the database under test, so
// that every statement of the suite goes through pgcloak's analyzer and
// encryption layer. Every test's output
// (psql's transcript of its statements, results, errors and notices) must
// be the same through pgcloak as directly, but for the refusals in
// pgRegressRefused, whose output must be the same up to the refusal.
//
// It needs pg_regress (Debian's postgresql-client-15), the server headers
// to build the suite's C module (postgresql-server-dev-15) and the
// PostgreSQL source, downloaded once into the cache (see harness.CacheDir).
// PGCLOAK_PG_REGRESS=off skips it (it takes about three minutes).
func TestPostgresRegress(t *testing.T) {
	if os.Getenv("PGCLOAK_PG_REGRESS") == "off" {
		t.Skip("PGCLOAK_PG_REGRESS=off")
	}
	bin, err := harness.PostgresBinDir()
	if err != nil {
		t.Fatal(err)
	}
	pgRegress := filepath.Join(filepath.Dir(bin), "lib", "pgxs", "src", "test", "regress", "pg_regress")
	if _, err := os.Stat(pgRegress); err != nil {
		t.Fatalf("pg_regress: %v (install postgresql-client-15)", err)
	}
	src := regressSource(t, bin)

	// Three identical clusters: the direct run, pgcloak relaying a database
	// it protects nothing in (admin_dsn names another one, so sessions take
	// the plain relay), and pgcloak with a protected table in the database
	// under test. The psql test names the database "regression", as
	// installcheck does.
	var pgs [3]*harness.Postgres
	var envs [3]*lcEnv
	vault := sharedVault(t)
	for i := range pgs {
		pgs[i] = harness.StartPostgres(t, harness.PostgresOptions{
			// The suite connects as roles it creates, without passwords.
			HBA: []string{"host all all 127.0.0.1/32 trust", "local all all trust"},
		})
		db := "regression"
		if i == 1 {
			db = "pgcloak_admin"
			if err := pgs[i].ExecDB("postgres", "CREATE DATABASE regression"); err != nil {
				t.Fatal(err)
			}
		}
		envs[i] = newLCEnvDB(t, pgs[i], vault, db, guardSQL,
			[]lcRule{{"public.pgcloak_guard", "secret", "{type: text, key: pii}"}})
	}
	relay := envs[1].startProxy(envs[1].config("encrypted"))
	protected := envs[2].startProxy(envs[2].config("encrypted"))

	// The runs write into the same directory, which the postgres user can
	// reach (the COPY tests make the server write files into results/), so
	// that the paths in their outputs are the same; each is moved aside
	// afterwards.
	base, err := os.MkdirTemp("", "pgcloak-regress-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	out := filepath.Join(base, "run")
	run := func(name, host, port, db string) (map[string]string, string) {
		if err := os.MkdirAll(filepath.Join(out, "results"), 0o777); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{filepath.Join(out, "results"), out, base} {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		defer func() {
			if err := os.Rename(out, filepath.Join(base, name)); err != nil {
				t.Fatal(err)
			}
		}()
		c := exec.Command(pgRegress, "--use-existing", "--host="+host, "--port="+port,
			"--user="+harness.SuperUser, "--dbname="+db,
			"--inputdir="+src, "--outputdir="+out, "--dlpath="+src,
			"--bindir="+bin, "--schedule="+filepath.Join(src, "parallel_schedule"),
			"--max-connections=10")
		c.Env = append(os.Environ(), "PGAPPNAME=pg_regress")
		begin := time.Now()
		stdout, _ := c.CombinedOutput() // non-zero when any test fails
		results := parseRegress(string(stdout))
		n := map[string]int{}
		for _, r := range results {
			n[r]++
		}
		var failed []string
		for test, r := range results {
			if r != "ok" {
				failed = append(failed, test)
			}
		}
		sort.Strings(failed)
		t.Logf("%s: %d tests ok, %d failed (%s), in %v", name, n["ok"], len(failed), strings.Join(failed, " "), time.Since(begin).Round(time.Second))
		if len(results) < 150 {
			t.Fatalf("%s: pg_regress ran %d tests:\n%s", name, len(results), stdout)
		}
		return results, filepath.Join(base, name)
	}
	hostPort := func(p *lcProxy) (string, string) {
		host, port, _ := strings.Cut(p.addr, ":")
		return host, port
	}
	want, directOut := run("direct", envs[0].pg.Host, fmt.Sprint(envs[0].pg.Port), "regression")
	rh, rp := hostPort(relay)
	gotRelay, relayOut := run("relay", rh, rp, "regression")
	ph, pp := hostPort(protected)
	got, protectedOut := run("protected", ph, pp, "regression")

	// The clusters run the same psql against the same server build, so
	// every test's output must be the same, whether or not it matches the
	// suite's expected file (see the README on versions).
	compareRegress(t, "relayed by pgcloak", want, gotRelay, directOut, relayOut, nil)
	compareRegress(t, "through pgcloak's analyzer", want, got, directOut, protectedOut, pgRegressRefused)
}

// compareRegress checks that every test's output in gotOut is the one in
// wantOut, but for refused tests, whose output must be the same up to
// pgcloak's refusal.
func compareRegress(t *testing.T, how string, want, got map[string]string, wantDir, gotDir string, refused map[string]string) {
	t.Helper()
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	same := 0
	for _, name := range names {
		wantOut := readFile(t, filepath.Join(wantDir, "results", name+".out"))
		gotOut := readFile(t, filepath.Join(gotDir, "results", name+".out"))
		if why, ok := refused[name]; ok {
			if line := firstDifference(wantOut, gotOut); !strings.Contains(line, why) {
				t.Errorf("%s: %s: the first difference from the direct run is %q, want pgcloak's refusal %q", how, name, line, why)
			}
			continue
		}
		if gotOut != wantOut {
			t.Errorf("%s: regression test %s (%s directly, %s through pgcloak): the output differs; %s", how, name, want[name], got[name], lineDiff(wantOut, gotOut))
			continue
		}
		same++
	}
	t.Logf("%s: %d of %d tests give the same output as directly; %d refused by design", how, same, len(names), len(refused))
}

// pgRegressLine is a test's result line of pg_regress 15: "test name ...
// ok 12 ms", "     name ... FAILED 30 ms" or "... failed (ignored)".
var pgRegressLine = regexp.MustCompile(`(?m)^(?:test\s+|\s+)(\S+)\s+\.\.\. (ok|FAILED|failed \(ignored\))`)

func parseRegress(out string) map[string]string {
	r := map[string]string{}
	for _, m := range pgRegressLine.FindAllStringSubmatch(out, -1) {
		r[m[1]] = m[2]
	}
	return r
}

// regressSource returns src/test/regress of the PostgreSQL source with the
// suite's C module (regress.so) built, in a directory the server (another
// user) can read: it loads the module and reads the data files.
func regressSource(t *testing.T, bin string) string {
	t.Helper()
	root := filepath.Join(os.TempDir(), "pgcloak-pg-regress-"+pgRegressVersion)
	src := filepath.Join(root, "postgresql-"+pgRegressVersion, "src", "test", "regress")
	if _, err := os.Stat(filepath.Join(src, "refint.so")); err == nil {
		return src // built by an earlier run
	}
	tarball := filepath.Join(harness.CacheDir(), filepath.Base(pgRegressURL))
	if err := download(tarball, pgRegressURL, pgRegressSHA256); err != nil {
		t.Fatalf("PostgreSQL source: %v", err)
	}
	tmp := root + ".tmp"
	_ = os.RemoveAll(tmp)
	top := "postgresql-" + pgRegressVersion + "/"
	if err := untarPrefix(tarball, tmp, top+"src/test/regress/", top+"contrib/spi/"); err != nil {
		t.Fatalf("extracting %s: %v", tarball, err)
	}
	tmpSrc := filepath.Join(tmp, "postgresql-"+pgRegressVersion, "src", "test", "regress")
	inc, err := exec.Command(filepath.Join(bin, "pg_config"), "--includedir-server").Output()
	if err != nil {
		t.Fatalf("pg_config --includedir-server: %v (install postgresql-server-dev-15)", err)
	}
	incDir := strings.TrimSpace(string(inc))
	if _, err := os.Stat(filepath.Join(incDir, "postgres.h")); err != nil {
		t.Fatalf("PostgreSQL server headers: %v (install postgresql-server-dev-15)", err)
	}
	// The suite's own module, and the two of contrib/spi that the
	// triggers test loads, all from --dlpath.
	spi := filepath.Join(tmp, "postgresql-"+pgRegressVersion, "contrib", "spi")
	// refint is built as contrib/spi's Makefile does, with REFINT_VERBOSE.
	for _, c := range [][2]string{{"regress", tmpSrc}, {"autoinc", spi}, {"refint", spi}} {
		cc := exec.Command(harness.RequireBinary(t, "gcc"), "-O2", "-fPIC", "-shared", "-I"+incDir, "-DREFINT_VERBOSE",
			"-o", filepath.Join(tmpSrc, c[0]+".so"), filepath.Join(c[1], c[0]+".c"))
		if out, err := cc.CombinedOutput(); err != nil {
			t.Fatalf("building %s.so: %v\n%s", c[0], err, out)
		}
	}
	if err := filepath.Walk(tmp, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, fi.Mode().Perm()|0o444)
	}); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	return src
}

// download fetches url into path unless path already holds a file with
// the given SHA-256.
func download(path, url, sum string) error {
	if b, err := os.ReadFile(path); err == nil {
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) == sum {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != sum {
		return fmt.Errorf("GET %s: SHA-256 %s, want %s", url, got, sum)
	}
	return os.WriteFile(path, b, 0o644)
}

// untarPrefix extracts the regular files of a .tar.bz2 whose names start
// with one of prefixes.
func untarPrefix(tarball, dst string, prefixes ...string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bzip2.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || strings.Contains(h.Name, "..") ||
			!slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(h.Name, p) }) {
			continue
		}
		p := filepath.Join(dst, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()|0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// firstDifference returns b's line where b first differs from a.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range bl {
		if i >= len(al) || al[i] != bl[i] {
			return bl[i]
		}
	}
	return ""
}

// lineDiff shows the first lines where a and b differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			var s strings.Builder
			for j := max(0, i-3); j < min(i+8, max(len(al), len(bl))); j++ {
				if j < len(al) {
					fmt.Fprintf(&s, "- %s\n", al[j])
				}
				if j < len(bl) {
					fmt.Fprintf(&s, "+ %s\n", bl[j])
				}
			}
			return fmt.Sprintf("first difference at line %d:\n%s", i+1, s.String())
		}
	}
	return "(same output)"
}
