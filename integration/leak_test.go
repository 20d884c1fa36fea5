package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/integration/harness"
)

const leakSchema = `
CREATE TABLE customers (
  id         int PRIMARY KEY,
  full_name  bytea,
  email      bytea,
  phone      bytea,
  age        bytea,
  note       text
);`

const leakTables = `
public.customers:
  full_name: {type: text, key: pii}
  email: {type: text, key: pii}
  phone: {type: text, key: pii}
  age: {type: int4, key: pii}
`

// leakSentinel is a unique value written through pgcloak into a protected
// column; it must be found nowhere on the server's side.
type leakSentinel struct {
	how    string // the path it took, for the failure message
	value  string
	stored bool // the write commits: reading back through pgcloak must find it
}

// leakSentinelSet hands out sentinels and remembers them.
type leakSentinelSet struct{ list []*leakSentinel }

func (s *leakSentinelSet) add(how string, stored bool) string {
	v := &leakSentinel{how: how, value: "SENTINEL-" + leakRandHex(8), stored: stored}
	s.list = append(s.list, v)
	return v.value
}

func leakRandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// leakForms are the byte strings that betray v: the text itself and its hex
// (bytea literals and parameter logs show bytes as hex).
func leakForms(v string) [][]byte {
	h := hex.EncodeToString([]byte(v))
	return [][]byte{[]byte(v), []byte(h), []byte(strings.ToUpper(h))}
}

// leakContains reports whether data holds v in any of its forms.
func leakContains(data []byte, v string) bool {
	for _, f := range leakForms(v) {
		if bytes.Contains(data, f) {
			return true
		}
	}
	return false
}

// TestLeakScan writes sentinel values through pgcloak into protected
// columns by every path a client has (literals in the simple and extended
// protocol, text and binary parameters, multi-row and multi-statement
// queries, UPDATE, upsert, SQL-level PREPARE/EXECUTE, a rolled-back
// transaction, statements that fail on the server, statements pgcloak
// refuses), on a cluster that logs every statement. After a CHECKPOINT and
// a WAL switch, no sentinel may be found in any file of the data directory
// (heap, WAL, everything), in the server log, in pg_waldump's decoding of
// the WAL, in the bytes pgcloak sent to or received from PostgreSQL, or in
// pgcloak's own log. Control values written into an unprotected column (and
// a WAL logical message) must be found by the same scans, which proves each
// scan can fail.
func TestLeakScan(t *testing.T) {
	pg := harness.StartPostgres(t, harness.PostgresOptions{Settings: map[string]string{
		"log_statement":           "'all'",
		"log_min_error_statement": "'error'",
		"wal_level":               "'replica'",
	}})
	wire := startWireRecorder(t, pg)
	var pgcloakLog lockedBuffer
	logCore := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(&pgcloakLog), zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), logCore))
	e := newCloakEnv(t, cloakEnvOptions{
		encEnvOptions: encEnvOptions{schema: leakSchema, tables: leakTables},
		pg:            pg,
		log:           log,
		upstream:      wire.addr,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := e.direct()

	// Every write below lands in WAL segments from here on.
	var startLSN string
	if _, err := d.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&startLSN); err != nil {
		t.Fatal(err)
	}

	var s leakSentinelSet
	control := "CONTROL-" + leakRandHex(8)   // unprotected column: on disk, in WAL, in the log, on the wire
	walControl := "WALMSG-" + leakRandHex(8) // logical message prefix: in pg_waldump's output
	c := e.connect()

	run := func(what, sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %s: %v", what, sql, err)
		}
	}
	fails := func(what, code string, err error) {
		t.Helper()
		if pgErrorCode(err) != code {
			t.Fatalf("%s: got %v, want SQLSTATE %s", what, err, code)
		}
	}

	// Simple protocol: literals, many rows, two statements in one Query.
	run("simple literals", fmt.Sprintf(
		`INSERT INTO customers (id, full_name, email, age, note) VALUES (1, '%s', '%s', 41, '%s'), (2, '%s', NULL, NULL, 'plain');
		 UPDATE customers SET phone = '%s' WHERE id = 1`,
		s.add("simple INSERT literal (full_name)", true), s.add("simple INSERT literal (email)", true), control,
		s.add("simple INSERT literal, second row", true), s.add("UPDATE literal in a multi-statement Query", true)))

	// Extended protocol, text-format parameters (pgx sends strings as text).
	run("text parameters", `INSERT INTO customers (id, full_name, email, phone) VALUES ($1, $2, $3, $4)`,
		3, s.add("extended text parameter (full_name)", true), s.add("extended text parameter (email)", true),
		s.add("extended text parameter (phone)", true))

	// Extended protocol, binary-format parameters, unnamed statement
	// (Parse, Bind, Describe, Execute, Sync in one round trip).
	if _, err := c.PgConn().ExecParams(ctx, `INSERT INTO customers (id, full_name, email) VALUES ($1, $2, $3)`,
		[][]byte{[]byte("4"), []byte(s.add("extended binary parameter (full_name)", true)), []byte(s.add("extended binary parameter (email)", true))},
		nil, []int16{0, 1, 1}, nil).Close(); err != nil {
		t.Fatalf("binary parameters: %v", err)
	}

	// Extended protocol, a literal in the Parse text.
	if _, err := c.PgConn().ExecParams(ctx, fmt.Sprintf(`UPDATE customers SET phone = '%s' WHERE id = 2`,
		s.add("extended UPDATE literal", true)), nil, nil, nil, nil).Close(); err != nil {
		t.Fatalf("extended literal: %v", err)
	}

	// UPDATE with a parameter.
	run("update parameter", `UPDATE customers SET email = $1 WHERE id = $2`, s.add("UPDATE parameter", true), 2)

	// Upsert taking EXCLUDED.
	run("upsert", fmt.Sprintf(`INSERT INTO customers (id, phone) VALUES (4, '%s') ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone`,
		s.add("INSERT … ON CONFLICT DO UPDATE SET phone = EXCLUDED.phone", true)))

	// SQL-level PREPARE / EXECUTE.
	run("prepare", `PREPARE ins AS INSERT INTO customers (id, email) VALUES ($1, $2)`)
	run("execute", fmt.Sprintf(`EXECUTE ins(5, '%s')`, s.add("SQL EXECUTE argument", true)))
	// The statement PREPAREd in SQL, bound in the extended protocol (the
	// two share one namespace in PostgreSQL).
	if _, err := c.PgConn().ExecPrepared(ctx, "ins", [][]byte{[]byte("7"), []byte(s.add("protocol Bind to an SQL-PREPAREd statement", true))},
		nil, nil).Close(); err != nil {
		t.Fatalf("Bind to a PREPAREd statement: %v", err)
	}

	// A transaction rolled back: its tuples stay in the heap and the WAL.
	run("begin", "BEGIN")
	run("insert in a transaction", fmt.Sprintf(`INSERT INTO customers (id, email) VALUES (6, '%s')`, s.add("INSERT rolled back", false)))
	run("rollback", "ROLLBACK")

	// Statements that fail on the server: log_min_error_statement logs
	// their text (and the unique violation's DETAIL its key).
	_, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO customers (id, email, note) VALUES (1, '%s', 'dup')`,
		s.add("simple INSERT failing with a unique violation", false)))
	fails("duplicate key (simple)", "23505", err)
	_, err = c.Exec(ctx, `INSERT INTO customers (id, email) VALUES ($1, $2)`, 1, s.add("extended INSERT failing with a unique violation", false))
	fails("duplicate key (extended)", "23505", err)
	_, err = c.Exec(ctx, fmt.Sprintf(`UPDATE customers SET email = '%s' WHERE id = 1 / 0`, s.add("UPDATE failing with a division by zero", false)))
	fails("division by zero", "22012", err)

	// Statements pgcloak refuses: nothing of them may reach PostgreSQL.
	_, err = c.Exec(ctx, fmt.Sprintf(`SELECT id FROM customers WHERE email = '%s'`, s.add("refused comparison, simple", false)))
	fails("refused comparison (simple)", "0A000", err)
	_, err = c.PgConn().ExecParams(ctx, `SELECT id FROM customers WHERE email = $1`,
		[][]byte{[]byte(s.add("refused comparison, parameter of a pipelined Parse/Bind", false))}, nil, nil, nil).Close()
	fails("refused comparison (pipelined Parse/Bind)", "0A000", err)
	_, err = c.Exec(ctx, fmt.Sprintf(`INSERT INTO customers (id, age) VALUES (20, '%s')`, s.add("invalid int4 literal", false)))
	fails("invalid int4 literal", "22P02", err)
	_, err = c.Exec(ctx, `INSERT INTO customers (id, age) VALUES ($1, $2)`, 21, s.add("invalid int4 parameter", false))
	fails("invalid int4 parameter", "22P02", err)
	_, err = c.Exec(ctx, fmt.Sprintf(`UPDATE customers SET email = lower('%s') WHERE id = 1`, s.add("refused UPDATE SET email = lower(literal)", false)))
	fails("refused UPDATE", "0A000", err)
	_, err = c.Exec(ctx, fmt.Sprintf(`INSERT INTO customers (id, email) SELECT 22, '%s' || ''`, s.add("refused INSERT … SELECT", false)))
	fails("refused INSERT … SELECT", "0A000", err)
	refusedCopyIn(t, e, s.add("COPY FROM STDIN data sent with a refused COPY (WHERE)", false))
	// COPY FROM STDIN into a protected table: encrypted while streaming.
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("31\t"+s.add("COPY FROM STDIN, encrypted while streaming", true)+"\n"),
		`COPY customers (id, email) FROM STDIN`); err != nil {
		t.Fatalf("COPY FROM STDIN: %v", err)
	}

	// The stored sentinels read back through pgcloak: the writes happened.
	// Cell by cell, so that a value pgcloak cannot decrypt (plaintext
	// written around it) fails this check but not the scans below.
	c.Close(ctx)
	got := map[string]bool{}
	var ids []int32
	idRows, err := d.Query(ctx, `SELECT id FROM customers ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for idRows.Next() {
		var id int32
		if err := idRows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := idRows.Err(); err != nil {
		t.Fatal(err)
	}
	rc := e.connect()
	for _, id := range ids {
		for _, col := range []string{"full_name", "email", "phone", "note"} {
			var v *string
			if err := rc.QueryRow(ctx, `SELECT `+col+` FROM customers WHERE id = $1`, id).Scan(&v); err != nil {
				t.Errorf("reading customers.%s of row %d through pgcloak: %v", col, id, err)
				rc = e.connect()
				continue
			}
			if v != nil {
				got[*v] = true
			}
		}
	}
	for _, sv := range s.list {
		if got[sv.value] != sv.stored {
			t.Errorf("%s: read back through pgcloak %v, want %v", sv.how, got[sv.value], sv.stored)
		}
	}
	if !got[control] {
		t.Fatalf("control value not stored")
	}
	rc.Close(ctx)

	// Flush everything to disk and close the WAL segment.
	var relPath, relFilenode, dbOID, endLSN string
	if err := d.QueryRow(ctx, `SELECT pg_relation_filepath('customers'), pg_relation_filenode('customers')::text,
		(SELECT oid::text FROM pg_database WHERE datname = current_database())`).Scan(&relPath, &relFilenode, &dbOID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, 'x')`, walControl); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(ctx, "SELECT pg_switch_wal()::text").Scan(&endLSN); err != nil {
		t.Fatal(err)
	}
	d.Close(ctx)
	e.srv.Close() // pgcloak's log and the wire are complete

	// scan looks for every sentinel and the control in data, failing t on a
	// sentinel; it returns whether the control was found.
	scan := func(t *testing.T, where string, data []byte) (controlFound bool) {
		t.Helper()
		for _, sv := range s.list {
			if leakContains(data, sv.value) {
				t.Errorf("LEAK: %s: sentinel %s (%s) found in %s", sv.how, sv.value, leakWhich(data, sv.value), where)
			}
		}
		return leakContains(data, control)
	}

	t.Run("data directory", func(t *testing.T) {
		var files, size int
		var controlIn []string
		err := filepath.WalkDir(pg.DataDir, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !de.Type().IsRegular() || path == pg.LogPath {
				return nil
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file of the running server
			}
			if err != nil {
				return err
			}
			files++
			size += len(data)
			rel, _ := filepath.Rel(pg.DataDir, path)
			if scan(t, rel, data) {
				controlIn = append(controlIn, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("scanned %d files, %d MB; control found in %v", files, size>>20, controlIn)
		inHeap, inWAL := false, false
		for _, f := range controlIn {
			inHeap = inHeap || f == relPath
			inWAL = inWAL || strings.HasPrefix(f, "pg_wal/")
		}
		if !inHeap || !inWAL {
			t.Errorf("the control value was not found in the heap file %s (%v) and the WAL (%v): the scan cannot be trusted", relPath, inHeap, inWAL)
		}
	})

	t.Run("server log", func(t *testing.T) {
		data, err := os.ReadFile(pg.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !scan(t, "the server log", data) {
			t.Errorf("the control value is not in the server log: the scan cannot be trusted")
		}
		// The failing statements were logged with their text: the log
		// saw them, in ciphertext.
		for _, want := range []string{"duplicate key value violates unique constraint", "division by zero", "STATEMENT:  INSERT INTO customers (id, email, note) VALUES (1, E'\\\\x"} {
			if !bytes.Contains(data, []byte(want)) {
				t.Errorf("server log lacks %q", want)
			}
		}
	})

	t.Run("pg_waldump", func(t *testing.T) {
		out := walDump(t, pg, startLSN, endLSN)
		scan(t, "pg_waldump's output", out)
		if !bytes.Contains(out, []byte(walControl)) {
			t.Errorf("the WAL logical message %s is not in pg_waldump's output: the scan cannot be trusted", walControl)
		}
		rel := fmt.Sprintf("rel 1663/%s/%s", dbOID, relFilenode)
		var inserts, updates int
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, rel) && strings.Contains(line, "rmgr: Heap ") {
				switch {
				case strings.Contains(line, "desc: INSERT"):
					inserts++
				case strings.Contains(line, "UPDATE"):
					updates++
				}
			}
		}
		t.Logf("pg_waldump %s..%s: %d bytes, %d heap INSERT and %d UPDATE records on customers (%s)", startLSN, endLSN, len(out), inserts, updates, rel)
		if inserts < 5 || updates < 3 {
			t.Errorf("pg_waldump did not decode the writes to customers (%d INSERT, %d UPDATE records on %s)", inserts, updates, rel)
		}
	})

	t.Run("wire to PostgreSQL", func(t *testing.T) {
		up, down := wire.bytes()
		if !scan(t, "the bytes pgcloak sent to PostgreSQL", up) {
			t.Errorf("the control value is not in the bytes sent to PostgreSQL: the scan cannot be trusted")
		}
		if !scan(t, "the bytes PostgreSQL sent to pgcloak", down) {
			t.Errorf("the control value is not in the bytes PostgreSQL sent: the scan cannot be trusted")
		}
	})

	t.Run("pgcloak log", func(t *testing.T) {
		data := pgcloakLog.Bytes()
		scan(t, "pgcloak's log", data)
		if len(data) == 0 {
			t.Errorf("pgcloak logged nothing: the scan cannot be trusted")
		}
	})
}

// leakWhich says which form of v data holds.
func leakWhich(data []byte, v string) string {
	for i, f := range leakForms(v) {
		if bytes.Contains(data, f) {
			return []string{"as text", "as hex", "as upper-case hex"}[i]
		}
	}
	return ""
}

// refusedCopyIn sends, in one write as a pipelining driver does (pgx's
// CopyFrom sends the data without waiting for CopyInResponse), a COPY …
// FROM STDIN on the protected table, a row of data holding value and
// CopyDone. pgcloak refuses the COPY; the data must not reach PostgreSQL.
func refusedCopyIn(t *testing.T, e *encEnv, value string) {
	t.Helper()
	fe := hijacked(t, e.dsn())
	fe.Send(&pgproto3.Query{String: "COPY customers (id, email) FROM STDIN WHERE id > 0"})
	fe.Send(&pgproto3.CopyData{Data: []byte("30\t" + value + "\n")})
	fe.Send(&pgproto3.CopyDone{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var code string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("refused COPY: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if code == "" {
				code = m.Code
			}
		case *pgproto3.CopyInResponse:
			t.Errorf("refused COPY: got CopyInResponse")
		case *pgproto3.ReadyForQuery:
			if code != "0A000" {
				t.Errorf("refused COPY: SQLSTATE %q, want 0A000", code)
			}
			fe.Send(&pgproto3.Terminate{})
			_ = fe.Flush()
			return
		}
	}
}

// walDump decodes the WAL from start to end with pg_waldump, as root if root
// can read the segments, else as the postgres user.
func walDump(t *testing.T, pg *harness.Postgres, start, end string) []byte {
	t.Helper()
	walDir := filepath.Join(pg.DataDir, "pg_wal")
	segs, _ := filepath.Glob(filepath.Join(walDir, "[0-9A-F]*"))
	sort.Strings(segs)
	if len(segs) == 0 {
		t.Fatalf("no WAL segments in %s", walDir)
	}
	args := []string{filepath.Join(pg.BinDir, "pg_waldump"), "-p", walDir, "-s", start, "-e", end}
	if f, err := os.Open(segs[len(segs)-1]); err != nil {
		t.Logf("cannot read %s as %d (%v): running pg_waldump as postgres", segs[len(segs)-1], os.Geteuid(), err)
		args = append([]string{"runuser", "-u", "postgres", "--"}, args...)
	} else {
		f.Close()
	}
	cmd := exec.Command(args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if stdout.Len() == 0 {
		t.Fatalf("pg_waldump printed nothing: %s", stderr.String())
	}
	return stdout.Bytes()
}
