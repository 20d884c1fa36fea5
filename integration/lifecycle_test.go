package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestConnectionChurn opens and ends many sessions, half with Terminate and
// half by dropping the socket: every one is counted out, both legs end, and
// no goroutine is left. Under -race it also checks the teardown of the two
// relay goroutines.
func TestConnectionChurn(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, srv := startProxy(t, pg, nil)
	direct := connect(t, directDSN(pg, harness.SuperUser))
	app := uniqueName(t, "churn")

	for i := range 100 {
		c, fe, _ := rawSession(t, addr, app)
		fe.Send(&pgproto3.Query{String: "SELECT 1"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if i%2 == 0 {
			fe.Send(&pgproto3.Terminate{})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			requireClosed(t, c)
		}
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.ActiveConnections() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d client connections still counted", srv.ActiveConnections())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sessionGone(t, direct, app, false, time.Now(), 10*time.Second)
	var n int
	if err := direct.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d backends left (%v)", n, err)
	}
	requireWorks(t, pg, addr)
}
