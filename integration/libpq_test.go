package integration

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/lib/pq"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// openPQ opens a database/sql pool with lib/pq that the test closes.
func openPQ(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(2)
	return db
}

// TestLibpqQueries runs parameterised queries, a prepared statement and a
// transaction with lib/pq through pgcloak, as every role.
func TestLibpqQueries(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	ctx := queryCtx(t)

	for _, user := range []string{harness.TrustUser, harness.MD5User, harness.SCRAMUser} {
		db := openPQ(t, dsn(pg, addr, user))
		var who string
		var sum int64
		var echo string
		if err := db.QueryRowContext(ctx, "SELECT current_user, $1::int8 + $2::int8, $3::text", 40, 2, "ünï ✓").Scan(&who, &sum, &echo); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if who != user || sum != 42 || echo != "ünï ✓" {
			t.Errorf("%s: got %q %d %q", user, who, sum, echo)
		}
	}

	db := openPQ(t, dsn(pg, addr, harness.TrustUser))
	table := uniqueName(t, "pq")
	if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, b bytea)", table)); err != nil {
		t.Fatal(err)
	}
	stmt, err := db.PrepareContext(ctx, fmt.Sprintf("INSERT INTO %s VALUES ($1, $2, $3)", table))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := stmt.ExecContext(ctx, i, fmt.Sprint("v", i), []byte{byte(i), 0, 0xff}); err != nil {
			t.Fatal(err)
		}
	}
	stmt.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE id >= $1", table), 100); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT id, v, b FROM %s WHERE id %% 50 = $1 ORDER BY id", table), 7)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id int
		var v string
		var b []byte
		if err := rows.Scan(&id, &v, &b); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d/%s/%x", id, v, b))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "[7/v7/0700ff 57/v57/3900ff 107/v107/6b00ff 157/v157/9d00ff]"; fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
	// An error reaches database/sql as a *pq.Error with the SQLSTATE.
	_, err = db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1, 'dup', NULL)", table))
	if pe, ok := err.(*pq.Error); !ok || pe.Code != "23505" {
		t.Errorf("duplicate key: %v, want *pq.Error 23505", err)
	}
}

// TestLibpqCopyIn runs COPY FROM STDIN with lib/pq's CopyIn.
func TestLibpqCopyIn(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	ctx := queryCtx(t)
	db := openPQ(t, dsn(pg, addr, harness.MD5User))
	table := uniqueName(t, "pqcopy")
	if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE %s (id int, name text, note text)", table)); err != nil {
		t.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the statement it builds is what we test; lib/pq keeps CopyIn working.
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn(table, "id", "name", "note"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	for i := 1; i <= n; i++ {
		var note any = fmt.Sprintf("tab\there, newline\nand \\ backslash %d", i)
		if i%10 == 0 {
			note = nil
		}
		if _, err := stmt.ExecContext(ctx, i, fmt.Sprint("name ", i), note); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil { // ends the COPY
		t.Fatal(err)
	}
	if err := stmt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	var count, nulls int
	var sum int64
	var note string
	err = db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*), count(*) - count(note), sum(id), max(note) FILTER (WHERE id = 7) FROM %s", table)).
		Scan(&count, &nulls, &sum, &note)
	if err != nil {
		t.Fatal(err)
	}
	if count != n || nulls != n/10 || sum != n*(n+1)/2 || note != "tab\there, newline\nand \\ backslash 7" {
		t.Errorf("count %d nulls %d sum %d note %q", count, nulls, sum, note)
	}

	// A COPY that fails on the server (bad data) rolls back; the pool's
	// connection stays usable.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 as above.
	stmt, err = tx.PrepareContext(ctx, pq.CopyIn(table, "id"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = stmt.ExecContext(ctx, "not a number")
	_, err = stmt.ExecContext(ctx)
	if pe, ok := err.(*pq.Error); !ok || pe.Code != "22P02" {
		t.Errorf("COPY of bad data: %v, want *pq.Error 22P02", err)
	}
	stmt.Close()
	tx.Rollback()
	if err := db.QueryRowContext(ctx, "SELECT 'usable'").Scan(&note); err != nil || note != "usable" {
		t.Errorf("after failed COPY: %q %v", note, err)
	}
}
