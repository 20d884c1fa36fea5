package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
)

// noTables is a catalog without protected tables: the settings model needs
// only the statements' effects.
type noTables struct{}

func (noTables) Protected(string, string) map[string]*sqlplan.Column { return nil }
func (noTables) Columns(string, string) []string                     { return nil }
func (noTables) Resolve(string, []string) (string, bool)             { return "", false }
func (noTables) ProtectedNames() []string                            { return nil }
func (noTables) Unavailable(string, string) string                   { return "" }
func (noTables) Ambiguous(string) bool                               { return false }

// TestSettingsModel drives pgcloak's model of session settings
// (sqlplan.Settings: SET, SET LOCAL, RESET under transactions, savepoints,
// errors and implicit transactions) with random statement sequences, the way
// the engine does (effects at each CommandComplete, Failed at an error, the
// end of the implicit transaction and the server's status at
// ReadyForQuery), and compares its search_path and extra_float_digits with
// what PostgreSQL shows after every Query. PGCLOAK_SETTINGS_SEED explores
// other seeds.
func TestSettingsModel(t *testing.T) {
	pg := sharedPG(t)
	ctx := context.Background()
	seed := uint64(20261207)
	if s := os.Getenv("PGCLOAK_SETTINGS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	conn, err := pgconn.Connect(ctx, pg.DSN(harness.SuperUser, harness.AppDB))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	show := func() (string, string) {
		res, err := conn.Exec(ctx, "SHOW search_path; SHOW extra_float_digits").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return string(res[0].Rows[0][0]), string(res[1].Rows[0][0])
	}
	path0, efd0 := show()
	model := sqlplan.NewSettings(map[string]string{sqlplan.SearchPath: path0, sqlplan.ExtraFloatDigits: efd0})

	pieces := []func() string{
		func() string { return fmt.Sprintf("SET search_path = s%d, public", rng.IntN(4)) },
		func() string { return fmt.Sprintf("SET LOCAL search_path = l%d", rng.IntN(4)) },
		func() string { return "RESET search_path" },
		func() string { return "SET search_path TO DEFAULT" },
		func() string { return fmt.Sprintf("SET extra_float_digits = %d", rng.IntN(4)) },
		func() string { return fmt.Sprintf("SET LOCAL extra_float_digits = -%d", rng.IntN(4)) },
		func() string { return "RESET ALL" },
		func() string {
			return fmt.Sprintf("SELECT pg_catalog.set_config('search_path', 'c%d', %v)", rng.IntN(3), rng.IntN(2) == 0)
		},
		func() string { return "BEGIN" },
		func() string { return "COMMIT" },
		func() string { return "ROLLBACK" },
		func() string { return "COMMIT AND CHAIN" },
		func() string { return fmt.Sprintf("SAVEPOINT sp%d", rng.IntN(3)) },
		func() string { return fmt.Sprintf("RELEASE SAVEPOINT sp%d", rng.IntN(3)) },
		func() string { return fmt.Sprintf("ROLLBACK TO SAVEPOINT sp%d", rng.IntN(3)) },
		func() string { return "SELECT 1/0" },
		func() string { return "SELECT 1" },
	}
	steps := 1500
	if testing.Short() {
		steps = 300
	}
	var history []string
	for step := range steps {
		n := 1 + rng.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = pieces[rng.IntN(len(pieces))]()
		}
		sql := strings.Join(parts, "; ")
		history = append(history, sql)
		an, err := sqlplan.Analyze(sql, noTables{}, model)
		if err != nil {
			t.Fatalf("step %d: %s: analyze: %v", step, sql, err)
		}
		mrr := conn.Exec(ctx, sql)
		i, failed := 0, false
		for mrr.NextResult() {
			if _, err := mrr.ResultReader().Close(); err != nil {
				model.Failed()
				failed = true
				break
			}
			if an != nil && i < len(an.Statements) {
				model.Apply(an.Statements[i].Effects)
			}
			i++
		}
		if err := mrr.Close(); err != nil && !failed {
			model.Failed() // the error of the statement after the last result
		}
		model.EndImplicit()
		model.Sync(conn.TxStatus())
		if conn.TxStatus() == 'E' {
			continue // SHOW is refused in a failed transaction
		}
		path, efd := show()
		mp, _ := model.Get(sqlplan.SearchPath)
		me, _ := model.Get(sqlplan.ExtraFloatDigits)
		if normPath(mp) != normPath(path) || me != efd {
			t.Fatalf("seed %d step %d: after %q\nPostgreSQL: search_path=%q extra_float_digits=%s\nmodel:      search_path=%q extra_float_digits=%s\nstatus %c; the last statements:\n  %s",
				seed, step, sql, path, efd, mp, me, conn.TxStatus(), strings.Join(history[max(0, len(history)-12):], "\n  "))
		}
	}
}

// normPath compares search_path values as PostgreSQL shows them (SET
// normalizes spacing; set_config keeps the text as given).
func normPath(p string) string { return strings.ReplaceAll(p, " ", "") }
