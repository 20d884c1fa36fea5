package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// pauseSchema: accounts is protected from the start; customers is the
// plaintext table the test adopts (docs/lifecycle.md), touched logs the
// writer's commits.
var pauseSchema = fmt.Sprintf(`
CREATE TABLE accounts (id int PRIMARY KEY, secret bytea, %s);
CREATE TABLE customers (id int PRIMARY KEY, email text);
INSERT INTO customers SELECT g, 'orig' || g || '@example.org' FROM generate_series(1, 2000) g;
CREATE TABLE touched (seq bigserial PRIMARY KEY, id int NOT NULL);`, catalog.BackstopConstraint("secret"))

// TestPauseMigrate follows docs/lifecycle.md's adoption of a plaintext
// column with a writer running through pgcloak the whole time, and the
// console instead of restarts:
//
//  1. PAUSE db: it returns once the writer is between transactions, and
//     the writer's next transaction waits (SHOW CLIENTS: paused);
//  2. the plan's DDL (the column becomes bytea) runs directly; no write
//     commits meanwhile;
//  3. RELOAD with the column's rule (state: migrating), KILL db (sessions
//     keep the rules they started with), RESUME db: the writer reconnects
//     and its writes are encrypted;
//  4. migrate encrypt, with the writer still running, encrypts the rest.
//
// The writer sees no error but the loss of its connection at KILL, before
// its held transaction reached PostgreSQL.
func TestPauseMigrate(t *testing.T) {
	e := newOpsEnv(t, pauseSchema)
	secret := lcRule{"public.accounts", "secret", "{type: text, key: pii}"}
	email := lcRule{"public.customers", "email", "{type: text, key: pii}"}
	console := "admin_users: [postgres]"
	e.write("encrypted", []lcRule{secret}, console)
	e.start()
	ctx := stepCtx(t)
	d := e.direct()
	touched := func() int {
		var n int
		if err := d.QueryRow(ctx, "SELECT count(*) FROM touched").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	w := startWriter(t, e.dsn(harness.SuperUser, e.db, "application_name", "writer"))
	waitFor(t, 30*time.Second, "the writer to commit", func() bool { return touched() > 0 })

	// 1. PAUSE.
	out := e.mustPsql(harness.SuperUser, "PAUSE "+e.db)
	waitFor(t, 30*time.Second, "the writer to be held", func() bool {
		return strings.Contains(psqlCells(e.mustPsql(harness.SuperUser, "SHOW CLIENTS")), "|writer|") &&
			strings.Contains(psqlCells(e.mustPsql(harness.SuperUser, "SHOW CLIENTS")), "|paused|")
	})
	t.Logf("PAUSE:\n%s", out)
	if v := e.metric(`pgcloak_paused{database="` + e.db + `"}`); v != "1" {
		t.Errorf("pgcloak_paused = %q, want 1", v)
	}
	before := touched()

	// 2. The plan's DDL, directly.
	e.write("migrating", []lcRule{secret, email}, console)
	script := lcRunCLI(t, e.bin, "migrate", "plan", "--table", "customers", "--config", e.config)
	if _, err := d.Exec(ctx, "SET lock_timeout = '10s'; "+script, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("plan DDL while paused: %v", err)
	}
	if after := touched(); after != before {
		t.Fatalf("%d writes committed while paused", after-before)
	}

	// 3. RELOAD, KILL, RESUME.
	out = e.mustPsql(harness.SuperUser, "RELOAD", "KILL "+e.db, "RESUME "+e.db)
	t.Logf("RELOAD, KILL, RESUME:\n%s", out)
	if !strings.Contains(out, "KILL 1") {
		t.Errorf("KILL %s ended other than the writer's one session:\n%s", e.db, out)
	}
	waitFor(t, 30*time.Second, "the writer to commit after RESUME", func() bool { return touched() > before+10 })
	var raw []byte
	if err := d.QueryRow(ctx, `SELECT email FROM customers WHERE id = (SELECT id FROM touched ORDER BY seq DESC LIMIT 1)`).Scan(&raw); err != nil || !crypto.IsCiphertext(raw) {
		t.Fatalf("a write after RESUME stored %q (%v), want ciphertext", raw, err)
	}

	// 4. migrate encrypt under the writer.
	out = lcRunCLI(t, e.bin, "migrate", "encrypt", "--table", "customers", "--yes", "--config", e.config)
	if !strings.Contains(out, "in place and validated") {
		t.Errorf("migrate encrypt:\n%s", out)
	}
	reconnects, failures := w.stop()
	if failures != nil || reconnects == 0 {
		t.Fatalf("writer: %d reconnects, failures %v; want the one reconnect after KILL and no failure", reconnects, failures)
	}
	var plain int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM customers WHERE NOT (email IS NULL OR `+crypto.CheckExpr("email")+`)`).Scan(&plain); err != nil || plain != 0 {
		t.Errorf("%d plaintext values left (%v)", plain, err)
	}
	t.Logf("writer: %d commits, %d reconnect(s)", touched(), reconnects)
}

// writer updates customers through pgcloak in transactions until stopped,
// logging each commit in touched. A lost connection (KILL) makes it
// reconnect and retry; any other error is a failure.
type writer struct {
	done       chan struct{}
	wg         sync.WaitGroup
	failures   error
	reconnects int
}

func startWriter(t *testing.T, dsn string) *writer {
	w := &writer{done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx := context.Background()
		var c *pgx.Conn
		defer func() {
			if c != nil {
				c.Close(ctx)
			}
		}()
		for i := 0; ; i++ {
			select {
			case <-w.done:
				return
			default:
			}
			if c == nil {
				var err error
				if c, err = pgx.Connect(ctx, dsn); err != nil {
					w.failures = errors.Join(w.failures, err)
					return
				}
			}
			id := i%2000 + 1
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE customers SET email = $1 WHERE id = $2", fmt.Sprintf("w%d@example.org", i), id); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO touched (id) VALUES ($1)", id)
				return err
			})
			if err != nil && (c.IsClosed() || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
				c.Close(ctx)
				c = nil
				w.reconnects++
				continue
			}
			if err != nil {
				w.failures = errors.Join(w.failures, err)
				return
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop ends the writer and reports what went wrong and how often it
// reconnected.
func (w *writer) stop() (reconnects int, failures error) {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
	return w.reconnects, w.failures
}

// TestPauseSemantics checks what PAUSE holds, on the fast relay (a plain
// session: no TLS, no protected columns): a transaction open when PAUSE
// comes goes on to its end, and PAUSE returns only then; the session's next
// statement waits (SHOW CLIENTS: paused) until RESUME, then runs.
func TestPauseSemantics(t *testing.T) {
	e := newRelayEnv(t, sharedPG(t))
	e.writeRelay(fmt.Sprintf("host=%s port=%d sslmode=disable", e.pg.Host, e.pg.Port), "")
	e.start()
	ctx := stepCtx(t)
	c := connect(t, e.dsn(harness.SuperUser, harness.AppDB, "application_name", "held"))
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	paused := make(chan string, 1)
	go func() {
		out, err := e.psql(harness.SuperUser, "PAUSE "+harness.AppDB)
		if err != nil {
			out += err.Error()
		}
		paused <- out
	}()
	state := func() string {
		for _, l := range strings.Split(psqlCells(e.mustPsql(harness.SuperUser, "SHOW CLIENTS")), "\n") {
			if f := strings.Split(l, "|"); len(f) > 6 && f[3] == "held" {
				return f[6]
			}
		}
		return ""
	}
	waitFor(t, 30*time.Second, "the database to be paused", func() bool {
		return strings.Contains(psqlCells(e.mustPsql(harness.SuperUser, "SHOW DATABASES")), harness.AppDB+"|1|yes")
	})
	// Inside its transaction the session is not held, and PAUSE waits for it.
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-paused:
		t.Fatalf("PAUSE returned while a transaction was open:\n%s", out)
	default:
	}
	if s := state(); s != "idle in transaction" {
		t.Fatalf("state %q inside the transaction", s)
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if out := <-paused; !strings.Contains(out, "PAUSE") {
		t.Fatalf("PAUSE: %s", out)
	}
	// The next statement waits.
	ran := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT 1")
		ran <- err
	}()
	waitFor(t, 30*time.Second, "the session to be held", func() bool { return state() == "paused" })
	select {
	case err := <-ran:
		t.Fatalf("a statement ran while paused (%v)", err)
	default:
	}
	if v := e.metric("pgcloak_paused_clients"); v != "1" {
		t.Errorf("pgcloak_paused_clients = %q, want 1", v)
	}
	e.mustPsql(harness.SuperUser, "RESUME "+harness.AppDB)
	if err := <-ran; err != nil {
		t.Fatalf("the held statement after RESUME: %v", err)
	}
	if s := state(); s != "idle" {
		t.Errorf("state %q after RESUME", s)
	}
}
