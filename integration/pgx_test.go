package integration

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/integration/harness"
)

func queryCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestPgxExtendedProtocol runs parameterised queries in each of pgx's query
// modes: unnamed statements (Parse/Bind/Execute), cached named statements,
// describe-then-execute and the simple protocol.
func TestPgxExtendedProtocol(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)

	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		for round := range 3 { // the cached modes reuse their statement after the first round
			var sum int64
			var s string
			err := c.QueryRow(ctx, "SELECT $1::int8 + $2::int8, $3::text || '!'", mode, int64(40+round), int64(2), "hi").Scan(&sum, &s)
			if err != nil {
				t.Fatalf("%v round %d: %v", mode, round, err)
			}
			if sum != int64(42+round) || s != "hi!" {
				t.Errorf("%v round %d: got %d, %q", mode, round, sum, s)
			}
		}
		// Many rows, so the result spans several relay buffers.
		rows, err := c.Query(ctx, "SELECT i, repeat('r', i % 200) FROM generate_series(1, $1::int) i", mode, 5000)
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		n := 0
		for rows.Next() {
			var i int32
			var r string
			if err := rows.Scan(&i, &r); err != nil {
				t.Fatal(err)
			}
			n++
			if int(i) != n || len(r) != n%200 {
				t.Fatalf("%v: row %d is (%d, %d bytes)", mode, n, i, len(r))
			}
		}
		if err := rows.Err(); err != nil || n != 5000 {
			t.Fatalf("%v: %d rows, err %v", mode, n, err)
		}
		// An error in the extended protocol leaves the session usable.
		_, err = c.Exec(ctx, "SELECT 1/$1::int", mode, 0)
		requirePgError(t, err, "22012")
	}
	if got := queryString(t, c, "SELECT 'alive'"); got != "alive" {
		t.Errorf("got %q", got)
	}
}

// TestPgxPreparedStatements prepares named statements, uses them many times
// and deallocates them; the server sees them under their names.
func TestPgxPreparedStatements(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)

	sd, err := c.Prepare(ctx, "double_it", "SELECT $1::int4 * 2, $2::text")
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.ParamOIDs) != 2 || sd.ParamOIDs[0] != pgtype.Int4OID || sd.ParamOIDs[1] != pgtype.TextOID {
		t.Errorf("ParameterDescription OIDs %v, want [int4 text]", sd.ParamOIDs)
	}
	if len(sd.Fields) != 2 || sd.Fields[0].DataTypeOID != pgtype.Int4OID {
		t.Errorf("RowDescription %+v", sd.Fields)
	}
	if _, err := c.Prepare(ctx, "add_it", "SELECT $1::int8 + $2::int8"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		var d int32
		var s string
		if err := c.QueryRow(ctx, "double_it", int32(i), fmt.Sprint(i)).Scan(&d, &s); err != nil {
			t.Fatal(err)
		}
		var sum int64
		if err := c.QueryRow(ctx, "add_it", int64(i), int64(1)).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if d != int32(2*i) || s != fmt.Sprint(i) || sum != int64(i+1) {
			t.Fatalf("round %d: %d %q %d", i, d, s, sum)
		}
	}
	names := queryString(t, c, "SELECT string_agg(name, ',' ORDER BY name) FROM pg_prepared_statements WHERE name NOT LIKE 'stmtcache%'")
	if names != "add_it,double_it" {
		t.Errorf("pg_prepared_statements: %q, want add_it,double_it", names)
	}
	if err := c.Deallocate(ctx, "double_it"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "EXECUTE double_it(1, 'x')"); pgErrorCode(err) != "26000" {
		t.Errorf("EXECUTE of a deallocated statement: %v, want SQLSTATE 26000", err)
	}
	// SQL-level PREPARE/EXECUTE too.
	if _, err := c.Exec(ctx, "PREPARE sqlprep(int) AS SELECT $1 + 1"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, "EXECUTE sqlprep(41)", pgx.QueryExecModeSimpleProtocol); got != "42" {
		t.Errorf("EXECUTE sqlprep(41) = %q", got)
	}
}

// TestPgxBatch sends a batch (all queries, one Sync) and reads every result.
func TestPgxBatch(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)
	table := uniqueName(t, "batch")

	// pgx prepares every statement of a batch before it runs any, so the
	// table must exist first.
	if _, err := c.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (id int, v text)", table)); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 'first'")
	for i := range 500 {
		b.Queue(fmt.Sprintf("INSERT INTO %s VALUES ($1, $2)", table), i, fmt.Sprint("v", i))
	}
	b.Queue(fmt.Sprintf("SELECT count(*), sum(id) FROM %s", table))
	b.Queue("SELECT generate_series(1, 3)")
	br := c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		tag, err := br.Exec()
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("insert %d: %v %v", i, tag, err)
		}
	}
	var n, sum int64
	if err := br.QueryRow().Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 500 || sum != 499*500/2 {
		t.Errorf("count %d sum %d", n, sum)
	}
	rows, err := br.Query()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || !reflect.DeepEqual(got, []int32{1, 2, 3}) {
		t.Errorf("generate_series: %v %v", got, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}

	// A batch with an error in the middle: the statements before it ran,
	// the ones after are skipped, the connection is usable.
	b = &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 3")
	br = c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Exec(); pgErrorCode(err) != "22012" {
		t.Errorf("second statement: %v, want 22012", err)
	}
	if err := br.Close(); pgErrorCode(err) != "22012" {
		t.Errorf("Close: %v, want the batch's 22012", err)
	}
	if got := queryString(t, c, "SELECT 'after batch'"); got != "after batch" {
		t.Errorf("got %q", got)
	}
}

// TestPgxPipeline drives pgconn's pipeline mode: several queries and a
// prepare sent without waiting, one Sync, then the results in order; and a
// failing query in a pipeline, after which the statements up to the next
// Sync are skipped.
func TestPgxPipeline(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)
	pc := c.PgConn()

	p := pc.StartPipeline(ctx)
	p.SendPrepare("pipe_stmt", "SELECT $1::int4 + 1", nil)
	for i := range 10 {
		p.SendQueryParams("SELECT $1::int4 * 10", [][]byte{fmt.Appendf(nil, "%d", i)}, nil, nil, nil)
	}
	p.SendQueryPrepared("pipe_stmt", [][]byte{[]byte("41")}, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	// Second segment: an error in the middle.
	p.SendQueryParams("SELECT 'before'", nil, nil, nil, nil)
	p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	p.SendQueryParams("SELECT 'skipped'", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	// Third segment: works again.
	p.SendQueryParams("SELECT 'third'", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}

	next := func() any {
		t.Helper()
		r, err := p.GetResults()
		if err != nil {
			return err
		}
		return r
	}
	if sd, ok := next().(*pgconn.StatementDescription); !ok || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != pgtype.Int4OID {
		t.Fatalf("want the prepared statement's description (one int4 parameter), got %#v", sd)
	}
	readOne := func(what string) string {
		t.Helper()
		rr, ok := next().(*pgconn.ResultReader)
		if !ok {
			t.Fatalf("%s: want a result", what)
		}
		res := rr.Read()
		if res.Err != nil {
			t.Fatalf("%s: %v", what, res.Err)
		}
		return string(res.Rows[0][0])
	}
	for i := range 10 {
		if got := readOne("query"); got != fmt.Sprint(i*10) {
			t.Errorf("query %d: %q", i, got)
		}
	}
	if got := readOne("prepared"); got != "42" {
		t.Errorf("prepared: %q", got)
	}
	if _, ok := next().(*pgconn.PipelineSync); !ok {
		t.Fatal("want the first Sync")
	}
	if got := readOne("before"); got != "before" {
		t.Errorf("got %q", got)
	}
	// pgconn reports the failing query's ErrorResponse from GetResults.
	r := next()
	if err, _ := r.(error); pgErrorCode(err) != "22012" {
		t.Fatalf("1/0 in pipeline: got %#v, want SQLSTATE 22012", r)
	}
	// The skipped query yields nothing: next comes the Sync.
	if r, ok := next().(*pgconn.PipelineSync); !ok {
		t.Fatalf("after the error want the second Sync, got %#v", r)
	}
	if got := readOne("third"); got != "third" {
		t.Errorf("got %q", got)
	}
	if _, ok := next().(*pgconn.PipelineSync); !ok {
		t.Fatal("want the third Sync")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, "SELECT 'after pipeline'"); got != "after pipeline" {
		t.Errorf("got %q", got)
	}
}

// binaryTypesSQL returns one row per i with a column of each type, computed
// deterministically so direct and proxied runs must agree byte for byte.
const binaryTypesSQL = `SELECT i::int2, i::int4 * 100003, i::int8 * 1000000007, (i / 7.0)::float4, i / 7.0::float8,
	(i / 7.0)::numeric(30, 15), (12345678901234567890 * i)::numeric, i % 2 = 0,
	repeat('t✓', i % 50), decode(md5(i::text), 'hex'), date '2000-01-01' + i,
	timestamp '2000-01-01 00:00:00' + i * interval '1 hour 1.000001 second',
	timestamptz '2000-01-01 00:00:00+00' + i * interval '1 minute',
	i * interval '1 month 1 day 1 microsecond', md5(i::text)::uuid,
	json_build_object('i', i, 's', 'x'), jsonb_build_object('i', i, 'a', ARRAY[i, i + 1]),
	ARRAY[i, -i, NULL]::int4[], ARRAY['a' || i, NULL, 'q"uote']::text[],
	('10.' || (i % 256) || '.0.1/16')::inet, ('2001:db8::' || i)::inet, NULL::int4
FROM generate_series(1, 2000) i`

// TestPgxBinaryFormat sends parameters and reads results in binary format
// for many types, through pgcloak and directly, and compares the bytes.
func TestPgxBinaryFormat(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	via := connect(t, dsn(pg, addr, harness.TrustUser))
	direct := connect(t, directDSN(pg, harness.TrustUser))
	ctx := queryCtx(t)

	// Results: every column in binary, raw bytes compared.
	read := func(c *pgx.Conn) *pgconn.Result {
		res := c.PgConn().ExecParams(ctx, binaryTypesSQL, nil, nil, nil, []int16{pgtype.BinaryFormatCode}).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res
	}
	got, want := read(via), read(direct)
	if len(got.Rows) != 2000 {
		t.Fatalf("%d rows", len(got.Rows))
	}
	for _, f := range got.FieldDescriptions {
		if f.Format != pgtype.BinaryFormatCode {
			t.Errorf("column %s in format %d", f.Name, f.Format)
		}
	}
	if !reflect.DeepEqual(got.FieldDescriptions, want.FieldDescriptions) {
		t.Errorf("RowDescription differs:\nvia pgcloak %+v\ndirect      %+v", got.FieldDescriptions, want.FieldDescriptions)
	}
	if !reflect.DeepEqual(got.Rows, want.Rows) {
		t.Errorf("binary rows differ between pgcloak and direct")
	}

	// Parameters: Go values encoded by pgx in binary, echoed by the server
	// in binary and decoded again.
	ts := time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)
	params := []any{
		int16(-12345), int32(math.MinInt32), int64(math.MaxInt64), float32(3.25), math.Pi,
		pgtype.Numeric{Int: big.NewInt(-1234567890123456789), Exp: -9, Valid: true},
		true, "text ✓ with 'quotes'", []byte{0, 1, 2, 0xfe, 0xff},
		time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), ts, ts.In(time.FixedZone("x", 5*3600+1800)),
		pgtype.Interval{Months: 14, Days: -3, Microseconds: 4005006, Valid: true},
		[16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11},
		map[string]any{"k": []any{1.5, "v", nil}}, map[string]any{"b": true, "n": 7.0},
		[]int32{1, -2, 3}, []string{"a", "b c", `q"uote`, ""},
		netip.MustParsePrefix("192.168.7.9/24"), netip.MustParsePrefix("2001:db8::1/64"),
	}
	const echoSQL = `SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::numeric, $7::bool, $8::text,
		$9::bytea, $10::date, $11::timestamp, $12::timestamptz, $13::interval, $14::uuid, $15::json, $16::jsonb,
		$17::int4[], $18::text[], $19::inet, $20::inet`
	echo := func(c *pgx.Conn) ([]any, []pgconn.FieldDescription) {
		rows, err := c.Query(ctx, echoSQL, params...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatalf("no row: %v", rows.Err())
		}
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		return vals, rows.FieldDescriptions()
	}
	gotVals, fds := echo(via)
	wantVals, _ := echo(direct)
	if !reflect.DeepEqual(gotVals, wantVals) {
		t.Errorf("echoed values differ:\nvia pgcloak %#v\ndirect      %#v", gotVals, wantVals)
	}
	binary := 0
	for _, f := range fds {
		if f.Format == pgtype.BinaryFormatCode {
			binary++
		}
	}
	if binary < 15 {
		t.Errorf("only %d of %d columns came back in binary format", binary, len(fds))
	}
	// Spot checks that the echo is the input.
	if gotVals[0] != int16(-12345) || gotVals[2] != int64(math.MaxInt64) || gotVals[7] != params[7] ||
		!reflect.DeepEqual(gotVals[8], params[8]) || !gotVals[11].(time.Time).Equal(ts) ||
		gotVals[18] != params[18] {
		t.Errorf("echo differs from input: %#v", gotVals)
	}

	// The same parameters in raw binary through pgconn, compared byte for
	// byte with what the server returns.
	m := pgtype.NewMap()
	oids := []uint32{pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.Float4OID, pgtype.Float8OID,
		pgtype.NumericOID, pgtype.BoolOID, pgtype.TextOID, pgtype.ByteaOID, pgtype.DateOID, pgtype.TimestampOID,
		pgtype.TimestamptzOID, pgtype.IntervalOID, pgtype.UUIDOID, pgtype.JSONOID, pgtype.JSONBOID,
		pgtype.Int4ArrayOID, pgtype.TextArrayOID, pgtype.InetOID, pgtype.InetOID}
	raw := make([][]byte, len(params))
	formats := make([]int16, len(params))
	for i, p := range params {
		b, err := m.Encode(oids[i], pgtype.BinaryFormatCode, p, nil)
		if err != nil {
			t.Fatalf("encode param %d: %v", i+1, err)
		}
		raw[i], formats[i] = b, pgtype.BinaryFormatCode
	}
	rawEcho := func(c *pgx.Conn) [][]byte {
		res := c.PgConn().ExecParams(ctx, echoSQL, raw, oids, formats, []int16{pgtype.BinaryFormatCode}).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Rows[0]
	}
	gotRaw, wantRaw := rawEcho(via), rawEcho(direct)
	if !reflect.DeepEqual(gotRaw, wantRaw) {
		t.Errorf("binary echo differs between pgcloak and direct")
	}
	for i := range raw {
		if oids[i] == pgtype.JSONBOID {
			continue // the server normalises jsonb's spacing
		}
		if string(gotRaw[i]) != string(raw[i]) {
			t.Errorf("param %d (oid %d): sent %x, got back %x", i+1, oids[i], raw[i], gotRaw[i])
		}
	}
}

// TestPgxCopyFrom copies 100,000 rows in with CopyFrom (binary COPY), counts
// them, and copies them out again through pgcloak and directly.
func TestPgxCopyFrom(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)
	table := uniqueName(t, "copyfrom")
	if _, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id int8, name text, amount numeric, at timestamptz, flag bool, data bytea)", table)); err != nil {
		t.Fatal(err)
	}

	const n = 100_000
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], uint64(i))
		return []any{int64(i), fmt.Sprintf("name %d %s", i, strings.Repeat("é", i%20)),
			pgtype.Numeric{Int: big.NewInt(int64(i)), Exp: -2, Valid: true},
			base.Add(time.Duration(i) * time.Second), i%3 == 0, data[:]}, nil
	})
	copied, err := c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name", "amount", "at", "flag", "data"}, src)
	if err != nil {
		t.Fatal(err)
	}
	if copied != n {
		t.Errorf("CopyFrom reported %d rows, want %d", copied, n)
	}
	var count, sum int64
	var total string
	if err := c.QueryRow(ctx, fmt.Sprintf("SELECT count(*), sum(id), sum(amount)::text FROM %s", table)).Scan(&count, &sum, &total); err != nil {
		t.Fatal(err)
	}
	if count != n || sum != n*(n+1)/2 || total != "50000500.00" {
		t.Errorf("count %d sum %d sum(amount) %s", count, sum, total)
	}
	var name string
	var flag bool
	var at time.Time
	if err := c.QueryRow(ctx, fmt.Sprintf("SELECT name, flag, at FROM %s WHERE id = 99999", table)).Scan(&name, &flag, &at); err != nil {
		t.Fatal(err)
	}
	if name != "name 99999 "+strings.Repeat("é", 99999%20) || !flag || !at.Equal(base.Add(99999*time.Second)) {
		t.Errorf("row 99999: %q %v %v", name, flag, at)
	}

	// COPY out, text and binary, through pgcloak equals direct.
	direct := connect(t, directDSN(pg, harness.TrustUser))
	for _, format := range []string{"text", "binary"} {
		sql := fmt.Sprintf("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT (FORMAT %s)", table, format)
		sum := func(c *pgx.Conn) ([32]byte, int64) {
			h := sha256.New()
			tag, err := c.PgConn().CopyTo(ctx, h, sql)
			if err != nil {
				t.Fatal(err)
			}
			var s [32]byte
			h.Sum(s[:0])
			return s, tag.RowsAffected()
		}
		gotSum, gotN := sum(c)
		wantSum, _ := sum(direct)
		if gotN != n || gotSum != wantSum {
			t.Errorf("COPY TO (%s) through pgcloak: %d rows, digest %x; direct digest %x", format, gotN, gotSum[:8], wantSum[:8])
		}
	}
}

// TestPgxListenNotify delivers notifications between two sessions through
// pgcloak, with the sender's real backend PID.
func TestPgxListenNotify(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	listener := connect(t, dsn(pg, addr, harness.TrustUser))
	sender := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)
	channel := uniqueName(t, "chan")

	if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Exec(ctx, "NOTIFY "+channel+", 'first'"); err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Exec(ctx, "SELECT pg_notify($1, $2)", channel, "second ✓"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second ✓"} {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if n.Channel != channel || n.Payload != want || n.PID != sender.PgConn().PID() {
			t.Errorf("notification %+v, want channel %s payload %q from pid %d", n, channel, want, sender.PgConn().PID())
		}
	}
	// A notification sent inside a transaction arrives only at commit.
	tx, err := sender.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "NOTIFY "+channel+", 'in tx'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if n, err := listener.WaitForNotification(wctx); err == nil {
		t.Errorf("notification %+v before commit", n)
	}
	cancel()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if n, err := listener.WaitForNotification(wctx); err != nil || n.Payload != "in tx" {
		t.Errorf("after commit: %+v %v", n, err)
	}
}

// TestPgxBackendPID checks BackendKeyData passthrough: the PID a client
// learns at startup is its real backend, the one PostgreSQL lists.
func TestPgxBackendPID(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	app := uniqueName(t, "pid")
	c := connect(t, dsn(pg, addr, harness.TrustUser, "application_name", app))
	direct := connect(t, directDSN(pg, harness.SuperUser))
	ctx := queryCtx(t)

	var backendPID uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backendPID); err != nil {
		t.Fatal(err)
	}
	if backendPID != c.PgConn().PID() {
		t.Errorf("pg_backend_pid() = %d, BackendKeyData says %d", backendPID, c.PgConn().PID())
	}
	var listed uint32
	if err := direct.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app).Scan(&listed); err != nil {
		t.Fatal(err)
	}
	if listed != backendPID {
		t.Errorf("pg_stat_activity lists pid %d, pg_backend_pid() through pgcloak is %d", listed, backendPID)
	}
}

// cancelConfig returns a pgx config whose context cancellation sends a
// CancelRequest at once (pgx's default closes the socket instead). The
// socket deadline stays far off, so only the CancelRequest can end the
// query early.
func cancelConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 30 * time.Second}
	}
	return cfg
}

// TestPgxCancel cancels `SELECT pg_sleep(10)` through the context: the
// CancelRequest goes through pgcloak to the right backend, the query ends
// within a second with 57014, and the connection stays usable.
func TestPgxCancel(t *testing.T) {
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c, err := connectConfig(t, cancelConfig(t, dsn(pg, addr, harness.TrustUser)))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := c.Exec(ctx, "SELECT pg_sleep(10)", mode)
		deadline, _ := ctx.Deadline()
		elapsed := time.Since(deadline)
		cancel()
		requirePgError(t, err, "57014", "canceling statement due to user request")
		if elapsed > time.Second {
			t.Errorf("%v: the query ended %v after the context was cancelled, want < 1s", mode, elapsed)
		}
		t.Logf("%v: cancelled in %v", mode, elapsed.Round(time.Millisecond))
		if got := queryString(t, c, "SELECT 'usable'"); got != "usable" {
			t.Errorf("after cancel: %q", got)
		}
	}
}

// TestCancelRequestWrongKey sends CancelRequests with made-up keys (and with
// the right PID but a wrong secret): they cancel nothing.
func TestCancelRequestWrongKey(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	app := uniqueName(t, "wrongkey")
	c := connect(t, dsn(pg, addr, harness.TrustUser, "application_name", app))
	direct := connect(t, directDSN(pg, harness.SuperUser))
	pid := c.PgConn().PID()

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(2)")
		done <- err
	}()
	waitActive(t, direct, app, "SELECT pg_sleep(2)")
	for _, key := range [][2]uint32{{12345, 67890}, {pid, 0xdeadbeef}, {pid, 0}} {
		pkt := make([]byte, 16)
		binary.BigEndian.PutUint32(pkt[0:], 16)
		binary.BigEndian.PutUint32(pkt[4:], 80877102)
		binary.BigEndian.PutUint32(pkt[8:], key[0])
		binary.BigEndian.PutUint32(pkt[12:], key[1])
		rc := rawConn(t, addr)
		if _, err := rc.Write(pkt); err != nil {
			t.Fatal(err)
		}
		requireClosed(t, rc) // as PostgreSQL: no answer, the connection ends
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pg_sleep(2) ended with %v, want normal completion", err)
		}
		if el := time.Since(start); el < 2*time.Second {
			t.Errorf("pg_sleep(2) returned after %v", el)
		}
	case <-time.After(queryTimeout):
		t.Fatal("pg_sleep(2) did not return")
	}
}

// waitActive waits until PostgreSQL shows query running for the session
// with application_name app.
func waitActive(t *testing.T, direct *pgx.Conn, app, query string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var state string
		err := direct.QueryRow(queryCtx(t), "SELECT state FROM pg_stat_activity WHERE application_name = $1 AND query = $2", app, query).Scan(&state)
		if err == nil && state == "active" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never showed as active (state %q, %v)", query, state, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
