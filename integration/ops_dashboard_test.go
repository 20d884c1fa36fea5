package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestDashboardMetrics checks that every series the Grafana dashboard
// (deploy/grafana/pgcloak.json) queries is one that pgcloak exports: it
// runs serve with protected columns, uses it (a session, a refused console
// login, PAUSE and RESUME, RELOAD), and looks for each metric the
// dashboard's queries and variables name in /metrics.
func TestDashboardMetrics(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(file)), "deploy", "grafana", "pgcloak.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/pgcloak.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}
	metricName := regexp.MustCompile(`\b(?:pgcloak|process|go)_[a-z_]+\b`)
	queried := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			queried[m] = true
		}
	}
	if len(queried) < 20 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(queried), queried)
	}

	e := newOpsEnv(t, opsSchemaSQL())
	e.write("encrypted", opsRules, "admin_users: [scram_user]")
	e.start()
	app := connect(t, e.dsn(harness.SCRAMUser, e.db))
	if _, err := app.Exec(stepCtx(t), "INSERT INTO customers VALUES (1, $1)", "ada@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.psql(harness.MD5User, "SHOW VERSION"); err == nil {
		t.Fatal("md5_user logged in to the console")
	}
	e.mustPsql(harness.SCRAMUser, "PAUSE "+e.db, "RESUME "+e.db, "RELOAD")

	_, body := e.get("/metrics")
	exported := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					exported[f[2]+s] = true
				}
			}
		}
	}
	var missing []string
	for m := range queried {
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics pgcloak does not export: %s", strings.Join(missing, ", "))
	}
	t.Logf("the dashboard's %d panels query %d metrics, all exported", len(dash.Panels), len(queried))
}
