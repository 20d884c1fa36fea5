package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestFailover runs serve as a plain relay in front of a primary and its
// streaming standby, both listed in upstream, and checks libpq's host
// selection: target_session_attrs (read-write, standby, prefer-standby)
// and load_balance_hosts=random, each applied by SIGHUP; then the primary
// is stopped and the standby promoted, and new sessions reach it.
func TestFailover(t *testing.T) {
	primary := harness.StartPostgres(t, harness.PostgresOptions{})
	standby := primary.StartStandby(t)
	e := newRelayEnv(t, primary)
	hosts := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d sslmode=disable", primary.Port, standby.Port)
	write := func(routing string) { e.writeRelay(hosts+" "+routing, "admin_dsn: \"user=postgres dbname=postgres\"") }
	ctx := stepCtx(t)
	dsn := e.dsn(harness.SuperUser, "postgres")
	// server is where a new session through pgcloak lands: its port, and
	// whether it is in recovery.
	server := func() (int, bool, error) {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, false, err
		}
		defer c.Close(ctx)
		var port int
		var standby bool
		err = c.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &standby)
		return port, standby, err
	}
	want := func(what string, port int, inRecovery bool) {
		t.Helper()
		got, rec, err := server()
		if err != nil || got != port || rec != inRecovery {
			t.Fatalf("%s: session on port %d (in recovery %v), %v; want %d", what, got, rec, err, port)
		}
	}

	write("target_session_attrs=read-write")
	e.start()
	want("read-write", primary.Port, false)
	write("target_session_attrs=standby")
	e.hup("ok")
	want("standby", standby.Port, true)
	write("target_session_attrs=prefer-standby")
	e.hup("ok")
	want("prefer-standby", standby.Port, true)
	write("target_session_attrs=any load_balance_hosts=random")
	e.hup("ok")
	ports := map[int]int{}
	for range 30 {
		p, _, err := server()
		if err != nil {
			t.Fatal(err)
		}
		ports[p]++
	}
	if len(ports) != 2 {
		t.Errorf("load_balance_hosts=random: 30 sessions went to %v, want both hosts", ports)
	}

	// Failover: the primary goes away, the standby is promoted.
	write("target_session_attrs=primary")
	e.hup("ok")
	want("primary", primary.Port, false)
	primary.Stop()
	if _, _, err := server(); err == nil || !strings.Contains(err.Error(), "hot standby") {
		t.Errorf("with the primary down and no other primary: %v, want an error saying the other host is a standby", err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	tries := 0
	waitFor(t, 30*time.Second, "new sessions to reach the promoted standby", func() bool {
		tries++
		p, rec, err := server()
		return err == nil && p == standby.Port && !rec
	})
	t.Logf("after the promotion, the first session on the new primary came %v later (attempt %d)", time.Since(promoted).Round(time.Millisecond), tries)
	primaryHost := "127.0.0.1:" + strconv.Itoa(primary.Port)
	if n, _ := strconv.Atoi(e.metric(`pgcloak_upstream_connect_errors_total{host="` + primaryHost + `"}`)); n == 0 {
		t.Errorf("pgcloak_upstream_connect_errors_total for the stopped primary is %d", n)
	}
	hostsOut := psqlCells(e.mustPsql(harness.SuperUser, "SHOW HOSTS"))
	t.Logf("SHOW HOSTS:\n%s", hostsOut)
	if !strings.Contains(hostsOut, primaryHost+"|unreachable|") || !strings.Contains(hostsOut, "127.0.0.1:"+strconv.Itoa(standby.Port)+"|primary|") {
		t.Errorf("SHOW HOSTS does not show the old primary unreachable and the promoted standby as primary")
	}
}
