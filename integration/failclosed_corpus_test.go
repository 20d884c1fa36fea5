package integration

// The adversarial write corpus of issue 10: ways a client (an attacker, or
// an ORM doing something ordinary) might get a plaintext value into a
// protected column through pgcloak. Each probe sends its own marker ({M})
// meant for a protected column; failclosed_test.go runs them and checks that
// the marker never ends up stored in plaintext, in the heap or in the WAL.
//
// Names start with the class, so one class runs with
// -run 'TestFailClosedCorpus/a/copy-'.

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Objects a DBA might make around pgcloak, shared by several probes.
const (
	fcAddCustomerFn = `CREATE FUNCTION add_customer(i int, e text) RETURNS void LANGUAGE plpgsql
		AS $$BEGIN INSERT INTO customers (id, email) VALUES (i, convert_to(e, 'UTF8')); END$$;`
	fcViewV       = `CREATE VIEW v AS SELECT id, email, note FROM customers;`
	fcInsteadOfCV = `CREATE VIEW cv AS SELECT id, note AS contact FROM customers;
		CREATE FUNCTION cv_ins() RETURNS trigger LANGUAGE plpgsql
		AS $$BEGIN INSERT INTO customers (id, email) VALUES (NEW.id, convert_to(NEW.contact, 'UTF8')); RETURN NEW; END$$;
		CREATE TRIGGER cv_ins INSTEAD OF INSERT ON cv FOR EACH ROW EXECUTE FUNCTION cv_ins();`
	fcTriggerCopy = `CREATE FUNCTION trg_copy() RETURNS trigger LANGUAGE plpgsql
		AS $$BEGIN IF NEW.note LIKE 'trg:%' THEN NEW.email := convert_to(reverse(substr(NEW.note, 5)), 'UTF8'); END IF; RETURN NEW; END$$;
		CREATE TRIGGER trg_copy BEFORE INSERT OR UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION trg_copy();`
	// fcSCSStatement reads differently with standard_conforming_strings
	// on and off: on, email is NULL ('a\' ends the literal, -- starts a
	// comment); off, \' is an escaped quote and email is the marker. Its
	// probes allow the marker on the wire: while the setting stays on, the
	// marker is in a comment the application wrote.
	fcSCSStatement = "INSERT INTO customers (id, note, email) VALUES (%d, 'a\\', -- ', '{M}') /*\nNULL) -- */"
)

// fcCopySimple sends a COPY FROM STDIN as a simple Query with its data and
// CopyDone in the same write, as pgx's CopyFrom does.
func fcCopySimple(r *fcRun, sql string, data ...[]byte) *fcResult {
	msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: r.sub(sql)}}
	for _, d := range data {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte(r.sub(string(d)))})
	}
	msgs = append(msgs, fcCopyDone())
	return r.rt("COPY (simple) "+fcShorten(r.sub(sql), 160), msgs...)
}

// fcCopyExtended sends the COPY with Parse/Bind/Execute, the data, CopyDone
// and Sync in one write.
func fcCopyExtended(r *fcRun, name, sql string, data ...[]byte) *fcResult {
	msgs := []pgproto3.FrontendMessage{fcParse(name, r.sub(sql)), fcBind(name), fcExecute()}
	for _, d := range data {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte(r.sub(string(d)))})
	}
	msgs = append(msgs, fcCopyDone(), fcSync())
	return r.rt("COPY (extended) "+fcShorten(r.sub(sql), 160), msgs...)
}

// fcCopyBinary encodes rows in COPY's binary format: int32 for int, bytes
// for string, NULL for nil.
func fcCopyBinary(rows ...[]any) []byte {
	b := []byte("PGCOPY\n\xff\r\n\x00")
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	for _, row := range rows {
		b = binary.BigEndian.AppendUint16(b, uint16(len(row)))
		for _, v := range row {
			switch v := v.(type) {
			case nil:
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			case int:
				b = binary.BigEndian.AppendUint32(b, 4)
				b = binary.BigEndian.AppendUint32(b, uint32(v))
			case string:
				b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
				b = append(b, v...)
			}
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

// fcPrepareProtocol makes a named statement with Parse, Describe and Sync,
// as pgx's conn.Prepare does.
func fcPrepareProtocol(r *fcRun, name, sql string) *fcResult {
	return r.rt("Parse "+name+": "+fcShorten(sql, 140), fcParse(name, r.sub(sql)), fcDescribeS(name), fcSync())
}

// fcBindExec binds the named statement with text parameters and executes
// it, as pgx's ExecPrepared does.
func fcBindExec(r *fcRun, name string, params ...string) *fcResult {
	for i := range params {
		params[i] = r.sub(params[i])
	}
	return r.rt("Bind/Execute "+name, fcBind(name, params...), fcDescribeP(), fcExecute(), fcSync())
}

// fcDirectDDL opens the probe's session and uses it, changes the schema
// directly (around pgcloak), then writes on that same session or on a new
// one.
func fcDirectDDL(ddl, write string, newSession bool) func(r *fcRun) {
	return func(r *fcRun) {
		r.q("SELECT 1")
		r.direct(ddl)
		if newSession {
			c := r.open("session after the DDL", nil)
			r.record(c.query(r.sub(write)))
			return
		}
		r.q(write)
	}
}

// fcServerSide limits a probe to setup b: see the doc of failclosed_test.go.
const fcServerSide = "b"

var fcCorpus = []fcProbe{
	// ---- prepared statements across SQL and protocol ----
	{name: "ps-sql-prepare-execute-one-query", class: "prepared statements",
		steps: []string{`PREPARE p AS INSERT INTO customers (id, email, phone) VALUES ($1, $2, $3); EXECUTE p(100, '{M}', '{M}-p')`}},
	{name: "ps-sql-prepare-then-execute", class: "prepared statements",
		steps: []string{`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`, `EXECUTE p(101, '{M}')`}},
	{name: "ps-sql-prepare-typed-text", class: "prepared statements",
		steps: []string{`PREPARE p (int, text) AS INSERT INTO customers (id, email) VALUES ($1, $2)`, `EXECUTE p(102, '{M}')`}},
	{name: "ps-protocol-parse-then-sql-execute", class: "prepared statements", run: func(r *fcRun) {
		fcPrepareProtocol(r, "s1", `INSERT INTO customers (id, email) VALUES ($1, $2)`)
		r.q(`EXECUTE s1(103, '{M}')`)
	}},
	{name: "ps-sql-prepare-then-protocol-bind", class: "prepared statements", run: func(r *fcRun) {
		r.q(`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`)
		fcBindExec(r, "p", "104", "{M}")
	}},
	{name: "ps-sql-prepare-name-case-folded", class: "prepared statements", run: func(r *fcRun) {
		// PREPARE folds an unquoted name to lower case; Bind names it exactly.
		r.q(`PREPARE InsCust AS INSERT INTO customers (id, email) VALUES ($1, $2)`)
		fcBindExec(r, "inscust", "105", "{M}")
	}},
	{name: "ps-deallocate-reprepare-sql", class: "prepared statements",
		steps: []string{`PREPARE p AS SELECT $1::int, $2::text`, `EXECUTE p(1, 'x')`, `DEALLOCATE p`,
			`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`, `EXECUTE p(106, '{M}')`}},
	{name: "ps-deallocate-reprepare-mixed", class: "prepared statements", run: func(r *fcRun) {
		fcPrepareProtocol(r, "p", `SELECT $1::int, $2::text`)
		r.q(`DEALLOCATE p`)
		r.q(`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`)
		fcBindExec(r, "p", "107", "{M}")
	}},
	{name: "ps-close-then-sql-prepare-other-columns", class: "prepared statements", run: func(r *fcRun) {
		fcPrepareProtocol(r, "p", `INSERT INTO customers (id, email, note) VALUES ($1, $2, $3)`)
		r.rt("Close p", fcCloseS("p"), fcSync())
		r.q(`PREPARE p AS INSERT INTO customers (id, note, email) VALUES ($1, $2, $3)`)
		fcBindExec(r, "p", "108", "n", "{M}")
	}},
	{name: "ps-failing-reprepare-sql-keeps-old", class: "prepared statements",
		steps: []string{`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`,
			`x: PREPARE p AS SELECT $1::int, $2::text`, `EXECUTE p(109, '{M}')`}},
	{name: "ps-failing-reparse-protocol-keeps-old", class: "prepared statements", run: func(r *fcRun) {
		fcPrepareProtocol(r, "s", `INSERT INTO customers (id, email) VALUES ($1, $2)`)
		r.expect(fcPrepareProtocol(r, "s", `SELECT $1::int, $2::text`)) // 42P05 on the server
		fcBindExec(r, "s", "110", "{M}")
	}},
	{name: "ps-failing-reparse-after-sql-prepare", class: "prepared statements", run: func(r *fcRun) {
		r.q(`PREPARE s AS INSERT INTO customers (id, email) VALUES ($1, $2)`)
		r.expect(fcPrepareProtocol(r, "s", `SELECT $1::int, $2::text`))
		fcBindExec(r, "s", "111", "{M}")
	}},
	{name: "ps-discard-all-reprepare-other-columns", class: "prepared statements",
		steps: []string{`PREPARE p AS INSERT INTO customers (id, email, note) VALUES ($1, $2, $3)`, `DISCARD ALL`,
			`PREPARE p AS INSERT INTO customers (id, note, email) VALUES ($1, $2, $3)`, `EXECUTE p(112, 'n', '{M}')`}},
	{name: "ps-discard-all-reparse-protocol", class: "prepared statements", run: func(r *fcRun) {
		fcPrepareProtocol(r, "p", `INSERT INTO customers (id, email, note) VALUES ($1, $2, $3)`)
		r.q(`DISCARD ALL`)
		fcPrepareProtocol(r, "p", `INSERT INTO customers (id, note, email) VALUES ($1, $2, $3)`)
		fcBindExec(r, "p", "113", "n", "{M}")
	}},
	{name: "ps-prepared-inside-do-block", class: "prepared statements",
		steps: []string{`DO $$BEGIN EXECUTE 'PREPARE hid AS INSERT INTO cust' || 'omers (id, email) VALUES ($1, $2)'; END$$`,
			`EXECUTE hid(114, '{M}')`}},
	{name: "ps-prepared-inside-do-block-protocol-bind", class: "prepared statements", run: func(r *fcRun) {
		r.q(`DO $$BEGIN EXECUTE 'PREPARE hid AS INSERT INTO cust' || 'omers (id, email) VALUES ($1, $2)'; END$$`)
		fcBindExec(r, "hid", "115", "{M}")
	}},
	{name: "ps-search-path-change-replans-sql", class: "prepared statements",
		// PostgreSQL re-analyses a prepared statement when search_path
		// changes: p was made for other.customers and would now write
		// public's. pgcloak qualified the name when it was prepared, so it
		// refuses to run it under the new path (prepare it again).
		steps: []string{`SET search_path = other, public`, `PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`,
			`SET search_path = public`, `EXECUTE p(116, '{M}')`}},
	{name: "ps-search-path-change-replans-protocol", class: "prepared statements", run: func(r *fcRun) {
		r.q(`SET search_path = other, public`)
		fcPrepareProtocol(r, "s", `INSERT INTO customers (id, email) VALUES ($1, $2)`)
		r.q(`SET search_path = public`)
		fcBindExec(r, "s", "117", "{M}")
	}},
	{name: "ps-explain-analyze-execute", class: "prepared statements",
		steps: []string{`PREPARE p AS INSERT INTO customers (id, email) VALUES ($1, $2)`, `EXPLAIN ANALYZE EXECUTE p(118, '{M}')`}},
	{name: "ps-parse-declares-text-parameter", class: "prepared statements", run: func(r *fcRun) {
		// An application that declares the logical type (text) of the
		// parameter, as some drivers do from the value's Go type.
		r.rt("Parse with OIDs int4, text", fcParse("", r.sub(`INSERT INTO customers (id, email) VALUES ($1, $2)`), 23, 25),
			fcBind("", "119", r.M), fcDescribeP(), fcExecute(), fcSync())
	}},
	{name: "ps-parse-declares-bytea-parameter", class: "prepared statements", run: func(r *fcRun) {
		r.rt("Parse with OIDs int4, bytea", fcParse("", r.sub(`INSERT INTO customers (id, email) VALUES ($1, $2)`), 23, 17),
			fcBind("", "120", r.M), fcDescribeP(), fcExecute(), fcSync())
	}},

	// ---- COPY on both protocols ----
	{name: "copy-simple-text", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN`, []byte("130\t{M}\n"))
	}},
	{name: "copy-simple-csv", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN (FORMAT csv)`, []byte("131,\"{M}\"\n"))
	}},
	{name: "copy-simple-binary", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN (FORMAT binary)`, fcCopyBinary([]any{132, r.M}))
	}},
	{name: "copy-extended-text", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopyExtended(r, "", `COPY customers (id, email) FROM STDIN`, []byte("133\t{M}\n"))
	}},
	{name: "copy-extended-csv", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopyExtended(r, "", `COPY customers (id, email) FROM STDIN (FORMAT csv)`, []byte("134,{M}\n"))
	}},
	{name: "copy-extended-binary", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopyExtended(r, "", `COPY customers (id, email) FROM STDIN (FORMAT binary)`, fcCopyBinary([]any{135, r.M}))
	}},
	{name: "copy-extended-named-statement", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcPrepareProtocol(r, "cp", `COPY customers (id, email) FROM STDIN`)
		r.rt("Bind/Execute cp with data", fcBind("cp"), fcExecute(), fcCopyData(r.sub("136\t{M}\n")), fcCopyDone(), fcSync())
	}},
	{name: "copy-simple-where", class: "COPY", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN WHERE id > 0`, []byte("137\t{M}\n"))
	}},
	{name: "copy-extended-where", class: "COPY", run: func(r *fcRun) {
		fcCopyExtended(r, "", `COPY customers (id, email) FROM STDIN WHERE id > 0`, []byte("138\t{M}\n"))
	}},
	{name: "copy-simple-from-program", class: "COPY",
		steps: []string{`COPY customers (id, email) FROM PROGRAM 'printf ''139\t{M}\n'''`}},
	{name: "copy-extended-from-program", class: "COPY",
		steps: []string{`e: COPY customers (id, email) FROM PROGRAM 'printf ''140\t{M}\n'''`}},
	{name: "copy-simple-from-file", class: "COPY", run: func(r *fcRun) {
		path := fcWriteServerFile(r.t, r.sub("141\t{M}\n"))
		r.q(fmt.Sprintf(`COPY customers (id, email) FROM '%s'`, path))
	}},
	{name: "copy-extended-from-file", class: "COPY", run: func(r *fcRun) {
		path := fcWriteServerFile(r.t, r.sub("142\t{M}\n"))
		r.ext(fmt.Sprintf(`COPY customers (id, email) FROM '%s'`, path))
	}},
	{name: "copy-csv-header-match", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN (FORMAT csv, HEADER match)`, []byte("id,email\n143,{M}\n"))
	}},
	{name: "copy-reordered-columns", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (email, id) FROM STDIN`, []byte("{M}\t144\n"))
	}},
	{name: "copy-all-columns-no-list", class: "COPY", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers FROM STDIN`, []byte("145\t{M}\t{M}-p\tnote\n"))
	}},
	{name: "copy-quoted-identifiers", class: "COPY", want: "{M}", run: func(r *fcRun) {
		fcCopyExtended(r, "", `COPY public."customers" ("email", "id") FROM STDIN (FORMAT csv)`, []byte("{M},146\n"))
	}},
	{name: "copy-text-escapes-bytea-hex", class: "COPY", want: `\x{MH}`, run: func(r *fcRun) {
		// COPY text turns \\ into \: the column receives \x<hex of the
		// marker>, which bytea input would turn into the marker itself.
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN`, []byte("147\t\\\\x{MH}\n"))
	}},
	{name: "copy-encoding-option-latin1", class: "COPY", want: "{M}\u00e9", run: func(r *fcRun) {
		fcCopySimple(r, `COPY customers (id, email) FROM STDIN (ENCODING 'LATIN1')`, []byte("148\t{M}\xe9\n"))
	}},
	{name: "copy-into-view-instead-of-trigger", only: fcServerSide, class: "COPY", preStart: fcInsteadOfCV, run: func(r *fcRun) {
		fcCopySimple(r, `COPY cv (id, contact) FROM STDIN`, []byte("149\t{M}\n"))
	}},
	{name: "copy-in-transaction-extended", class: "COPY", want: "{M}", run: func(r *fcRun) {
		r.q(`BEGIN`)
		fcCopyExtended(r, "", `COPY customers (id, email) FROM STDIN`, []byte("150\t{M}\n"))
		r.q(`COMMIT`)
	}},

	// ---- server-side code ----
	{name: "code-do-static-insert", class: "server-side code",
		steps: []string{`DO $$BEGIN INSERT INTO customers (id, email) VALUES (160, '{M}'); END$$`}},
	{name: "code-do-dynamic-table-name", only: fcServerSide, class: "server-side code",
		steps: []string{`DO $$BEGIN EXECUTE 'INSERT INTO cust' || 'omers (id, email) VALUES (161, ''{M}'')'; END$$`}},
	{name: "code-do-format-using", only: fcServerSide, class: "server-side code",
		steps: []string{`DO $$BEGIN EXECUTE format('INSERT INTO %I (id, email) VALUES ($1, $2)', 'customers') USING 162, convert_to('{M}', 'UTF8'); END$$`}},
	{name: "code-do-forged-header", class: "server-side code",
		// The value wears the pgcloak header: the backstop accepts it.
		steps: []string{`DO $$BEGIN INSERT INTO customers (id, email) VALUES (163, decode('{FORGED}', 'hex')); END$$`}},
	{name: "code-plpgsql-function-literal", only: fcServerSide, class: "server-side code", preStart: fcAddCustomerFn,
		steps: []string{`SELECT add_customer(164, '{M}')`}},
	{name: "code-plpgsql-function-parameter", only: fcServerSide, class: "server-side code", preStart: fcAddCustomerFn, run: func(r *fcRun) {
		r.ext(`SELECT add_customer($1, $2)`, "165", "{M}")
	}},
	{name: "code-plpgsql-dynamic-sql", only: fcServerSide, class: "server-side code",
		preStart: `CREATE FUNCTION add_dyn(i int, e text) RETURNS void LANGUAGE plpgsql
			AS $$BEGIN EXECUTE 'INSERT INTO cust' || 'omers (id, email) VALUES ($1, $2)' USING i, convert_to(e, 'UTF8'); END$$;`,
		steps: []string{`SELECT add_dyn(166, '{M}')`}},
	{name: "code-sql-function", only: fcServerSide, class: "server-side code",
		preStart: `CREATE FUNCTION add_sql(int, bytea) RETURNS void LANGUAGE sql AS 'INSERT INTO customers (id, email) VALUES ($1, $2)';`,
		steps:    []string{`SELECT add_sql(167, '{M}')`}},
	{name: "code-sql-function-begin-atomic", only: fcServerSide, class: "server-side code",
		preStart: `CREATE FUNCTION add_atomic(i int, e bytea) RETURNS void LANGUAGE sql BEGIN ATOMIC INSERT INTO customers (id, email) VALUES (i, e); END;`,
		steps:    []string{`SELECT add_atomic(168, '{M}')`}},
	{name: "code-procedure-call", only: fcServerSide, class: "server-side code",
		preStart: `CREATE PROCEDURE add_proc(i int, e bytea) LANGUAGE sql AS $$INSERT INTO customers (id, email) VALUES (i, e)$$;`,
		steps:    []string{`CALL add_proc(169, '{M}')`}},
	{name: "code-function-update", only: fcServerSide, class: "server-side code",
		preStart: `CREATE FUNCTION set_email(i int, e text) RETURNS void LANGUAGE plpgsql
			AS $$BEGIN UPDATE customers SET email = convert_to(e, 'UTF8') WHERE id = i; END$$;`,
		steps: []string{`SELECT set_email(1, '{M}')`}},
	{name: "code-function-in-cte", only: fcServerSide, class: "server-side code", preStart: fcAddCustomerFn,
		steps: []string{`WITH x AS (SELECT add_customer(170, '{M}') AS r) SELECT count(*) FROM x`}},
	{name: "code-create-function-through-pgcloak", class: "server-side code",
		steps: []string{`CREATE FUNCTION sneak() RETURNS void LANGUAGE sql AS $$INSERT INTO customers (id, email) VALUES (171, '{M}')$$`,
			`SELECT sneak()`}},
	{name: "code-fastpath-function-call", only: fcServerSide, class: "server-side code", preStart: fcAddCustomerFn, run: func(r *fcRun) {
		// The protocol's FunctionCall message runs a function by OID.
		var oid uint32
		r.withDirect(func(q func(string, ...any) error) error {
			return q(`SELECT 'add_customer'::regproc::oid`, &oid)
		})
		r.rt("FunctionCall add_customer", &pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{0},
			Arguments: [][]byte{[]byte("172"), []byte(r.M)}, ResultFormatCode: 0})
	}},
	{name: "code-dblink-exec", only: fcServerSide, class: "server-side code", preStart: `CREATE EXTENSION dblink;`,
		steps: []string{`SELECT dblink_exec('host=127.0.0.1 port={PORT} dbname={DB} user=postgres', 'INSERT INTO customers (id, email) VALUES (173, ''{M}'')')`}},
	{name: "code-postgres-fdw-foreign-table", only: fcServerSide, class: "server-side code",
		preStart: `CREATE EXTENSION postgres_fdw;
			CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '{PORT}', dbname '{DB}');
			CREATE USER MAPPING FOR postgres SERVER loop OPTIONS (user 'postgres');
			CREATE FOREIGN TABLE ft_customers (id int, email bytea, phone bytea, note text) SERVER loop OPTIONS (schema_name 'public', table_name 'customers');`,
		steps: []string{`INSERT INTO ft_customers (id, email) VALUES (174, '{M}')`}},
	{name: "code-column-default-from-setting", only: fcServerSide, class: "server-side code",
		preStart: `ALTER TABLE customers ALTER COLUMN email SET DEFAULT convert_to(current_setting('app.m', true), 'UTF8');`,
		steps:    []string{`SET app.m = '{M}'`, `INSERT INTO customers (id) VALUES (175)`}},
	// The table's owner drops the protected column, backstop and all, and
	// adds a generated one in its place, directly: until the next catalog
	// read (catalog_refresh) nothing stands in the way.
	{name: "code-generated-column", only: fcServerSide, class: "server-side code", limit: "a protected column dropped and re-made directly loses its backstop until the next catalog read", run: fcDirectDDL(
		`ALTER TABLE customers DROP COLUMN phone;
		 ALTER TABLE customers ADD COLUMN phone bytea GENERATED ALWAYS AS (CASE WHEN note LIKE 'gen:%' THEN decode(reverse(substr(note, 5)), 'escape') END) STORED`,
		`INSERT INTO customers (id, note) VALUES (176, 'gen:{RM}')`, true)},

	// ---- triggers ----
	{name: "trig-before-insert-sets-email", only: fcServerSide, class: "triggers", preStart: fcTriggerCopy,
		steps: []string{`INSERT INTO customers (id, note) VALUES (180, 'trg:{RM}')`}},
	{name: "trig-before-update-sets-email", only: fcServerSide, class: "triggers", preStart: fcTriggerCopy,
		steps: []string{`UPDATE customers SET note = 'trg:{RM}' WHERE id = 1`}},
	{name: "trig-other-table-writes-customers", only: fcServerSide, class: "triggers", allow: []string{"orders"}, wire: true,
		preStart: `CREATE FUNCTION orders_fwd() RETURNS trigger LANGUAGE plpgsql
			AS $$BEGIN INSERT INTO customers (id, email) VALUES (NEW.id, convert_to(NEW.note, 'UTF8')); RETURN NEW; END$$;
			CREATE TRIGGER orders_fwd AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_fwd();`,
		steps: []string{`INSERT INTO orders (id, note) VALUES (181, '{M}')`}},
	{name: "trig-statement-trigger-transition-table", only: fcServerSide, class: "triggers", allow: []string{"orders"}, wire: true,
		preStart: `CREATE FUNCTION orders_bulk() RETURNS trigger LANGUAGE plpgsql
			AS $$BEGIN INSERT INTO customers (id, email) SELECT id, convert_to(note, 'UTF8') FROM new_rows; RETURN NULL; END$$;
			CREATE TRIGGER orders_bulk AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orders_bulk();`,
		run: func(r *fcRun) {
			fcCopySimple(r, `COPY orders (id, note) FROM STDIN`, []byte("182\t{M}\n"))
		}},

	// ---- rules ----
	{name: "rule-also-insert-from-other-table", only: fcServerSide, class: "rules", allow: []string{"inbox"}, wire: true,
		preStart: `CREATE RULE inbox_fwd AS ON INSERT TO inbox DO ALSO INSERT INTO customers (id, email) VALUES (NEW.id, convert_to(NEW.e, 'UTF8'));`,
		steps:    []string{`INSERT INTO inbox VALUES (190, '{M}')`}},
	{name: "rule-instead-insert", only: fcServerSide, class: "rules", allow: []string{"inbox"}, wire: true,
		preStart: `CREATE RULE inbox_fwd AS ON INSERT TO inbox DO INSTEAD INSERT INTO customers (id, email) VALUES (NEW.id, NEW.e::bytea);`,
		steps:    []string{`INSERT INTO inbox VALUES (191, '{M}')`}},
	{name: "rule-on-customers-also-update", only: fcServerSide, class: "rules",
		preStart: `CREATE RULE cust_ins AS ON INSERT TO customers WHERE NEW.note LIKE 'rule:%'
			DO ALSO UPDATE customers SET email = convert_to(reverse(substr(NEW.note, 6)), 'UTF8') WHERE id = NEW.id;`,
		steps: []string{`INSERT INTO customers (id, note) VALUES (192, 'rule:{RM}')`}},
	{name: "rule-instead-on-view-extended", only: fcServerSide, class: "rules", allow: []string{"inbox"}, wire: true,
		preStart: `CREATE VIEW inbox_v AS SELECT id, e FROM inbox;
			CREATE RULE inbox_v_ins AS ON INSERT TO inbox_v DO INSTEAD INSERT INTO customers (id, email) VALUES (NEW.id, NEW.e::bytea);`,
		run: func(r *fcRun) { r.ext(`INSERT INTO inbox_v (id, e) VALUES ($1, $2)`, "193", "{M}") }},

	// ---- views ----
	{name: "view-insert", class: "views", preStart: fcViewV,
		steps: []string{`INSERT INTO v (id, email) VALUES (200, '{M}')`}},
	{name: "view-insert-renamed-columns", class: "views", preStart: `CREATE VIEW v2 (cid, contact) AS SELECT id, email FROM customers;`,
		steps: []string{`INSERT INTO v2 VALUES (201, '{M}')`}},
	{name: "view-update", class: "views", preStart: fcViewV,
		steps: []string{`UPDATE v SET email = '{M}' WHERE id = 1`}},
	{name: "view-in-other-schema-check-option", class: "views",
		preStart: `CREATE VIEW other2.v3 AS SELECT * FROM public.customers WITH CHECK OPTION;`,
		steps:    []string{`INSERT INTO other2.v3 (id, email) VALUES (202, '{M}')`}},
	{name: "view-instead-of-trigger", only: fcServerSide, class: "views", preStart: fcInsteadOfCV,
		steps: []string{`INSERT INTO cv VALUES (203, '{M}')`}},
	{name: "view-cte-insert", class: "views", preStart: fcViewV,
		steps: []string{`WITH x AS (INSERT INTO v (id, email) VALUES (204, '{M}') RETURNING id) SELECT id FROM x`}},
	{name: "view-insert-extended-parameter", class: "views", preStart: fcViewV,
		run: func(r *fcRun) { r.ext(`INSERT INTO v (id, email) VALUES ($1, $2)`, "205", "{M}") }},
	// What counts is that the view is refused; the INSERT that follows
	// names a relation that then does not exist.
	{name: "view-temp-view-through-pgcloak", class: "views", wire: true,
		steps: []string{`CREATE TEMP VIEW tv AS SELECT * FROM customers`, `INSERT INTO tv (id, email) VALUES (206, '{M}')`}},
	{name: "view-nested-views", class: "views",
		preStart: fcViewV + `CREATE VIEW vv AS SELECT * FROM v WHERE id > 0;`,
		steps:    []string{`INSERT INTO vv (id, email) VALUES (207, '{M}')`}},
	{name: "view-upsert", class: "views", preStart: fcViewV,
		steps: []string{`INSERT INTO v (id, email) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET email = '{M}'`}},

	// ---- row expansion ----
	{name: "row-expand-row-cast", class: "row expansion",
		steps: []string{`INSERT INTO customers SELECT (ROW(210, '{M}', '{M}-p', 'n')::customers).*`}},
	{name: "row-expand-subselect", class: "row expansion",
		steps: []string{`INSERT INTO customers SELECT (t).* FROM (SELECT ROW(211, '{M}', NULL, 'n')::customers AS t) s`}},
	{name: "row-select-star-from-staging", class: "row expansion", allow: []string{"staging"},
		steps: []string{`d: INSERT INTO staging VALUES (212, '{M}', NULL, 'n')`, `INSERT INTO customers SELECT * FROM staging`}},
	{name: "row-row-variable-from-staging", class: "row expansion", allow: []string{"staging"},
		steps: []string{`d: INSERT INTO staging VALUES (213, '{M}', NULL, 'n')`, `INSERT INTO customers SELECT (s).* FROM staging s`}},
	{name: "row-values-without-column-list", class: "row expansion", want: "{M}",
		steps: []string{`INSERT INTO customers VALUES (214, '{M}', NULL, 'n')`}},
	{name: "row-insert-select-constants", class: "row expansion",
		steps: []string{`INSERT INTO customers SELECT 215, '{M}', NULL, 'n'`}},
	{name: "row-json-populate-record", class: "row expansion",
		steps: []string{`INSERT INTO customers SELECT * FROM json_populate_record(NULL::customers, '{"id": 216, "email": "{M}"}')`}},
	{name: "row-jsonb-populate-recordset-hex", class: "row expansion",
		steps: []string{`INSERT INTO customers SELECT * FROM jsonb_populate_recordset(NULL::customers, '[{"id": 217, "email": "\\x{MH}"}]')`}},
	{name: "row-update-multi-assign", class: "row expansion",
		steps: []string{`UPDATE customers SET (email, phone) = ('{M}', '{M}-p') WHERE id = 1`}},
	{name: "row-update-multi-assign-subselect", class: "row expansion",
		steps: []string{`UPDATE customers SET (email, phone) = (SELECT '{M}', '{M}-p') WHERE id = 2`}},
	{name: "row-update-from-staging", class: "row expansion", allow: []string{"staging"},
		steps: []string{`d: INSERT INTO staging VALUES (1, '{M}', NULL, 'n')`, `UPDATE customers c SET email = s.email FROM staging s WHERE c.id = s.id`}},
	{name: "row-update-from-values", class: "row expansion",
		steps: []string{`UPDATE customers c SET email = v.e::bytea FROM (VALUES (1, '{M}')) v(id, e) WHERE c.id = v.id`}},
	{name: "row-scalar-subquery-value", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email) VALUES (218, (SELECT '{M}'))`}},
	{name: "row-array-subscript", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email) SELECT 219, (ARRAY['{M}'::bytea])[1]`}},
	{name: "row-decode-hex", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email) VALUES (220, decode('{MH}', 'hex'))`}},
	{name: "row-convert-to", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email) VALUES (221, convert_to('{M}', 'UTF8'))`}},
	{name: "row-cte-values", class: "row expansion",
		steps: []string{`WITH x(e) AS (VALUES ('{M}')) INSERT INTO customers (id, email) SELECT 222, e::bytea FROM x`}},
	{name: "row-merge", class: "row expansion",
		steps: []string{`MERGE INTO customers c USING (VALUES (223, '{M}')) x(id, e) ON c.id = x.id WHEN NOT MATCHED THEN INSERT (id, email) VALUES (x.id, x.e::bytea)`}},
	{name: "row-upsert-excluded", class: "row expansion", want: "{M}",
		steps: []string{`INSERT INTO customers (id, email) VALUES (1, '{M}') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email`}},
	{name: "row-explain-analyze-insert", class: "row expansion",
		steps: []string{`EXPLAIN ANALYZE INSERT INTO customers (id, email) VALUES (224, '{M}')`}},
	{name: "row-inheritance-child", class: "row expansion", preStart: `CREATE TABLE cust_child () INHERITS (customers);`,
		steps: []string{`INSERT INTO cust_child (id, email) VALUES (225, '{M}')`}},
	{name: "row-typed-literals", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email, phone) VALUES (226, bytea '{M}', CAST('{M}-p' AS bytea))`}},
	{name: "row-dollar-quoted-literal", class: "row expansion", want: "{M}",
		steps: []string{`INSERT INTO customers (id, email) VALUES (227, $q${M}$q$)`}},
	{name: "row-escape-string-literal", class: "row expansion", want: "{M}AA",
		steps: []string{`INSERT INTO customers (id, email) VALUES (228, E'{M}\101\x41')`}},
	{name: "row-unicode-escape-literal", class: "row expansion", want: "{M}A",
		steps: []string{`INSERT INTO customers (id, email) VALUES (229, U&'{M}\0041')`}},
	{name: "row-comments-with-quotes", class: "row expansion", want: "{M}",
		steps: []string{"INSERT INTO customers (id, email) VALUES (230, /* ' */ '{M}' -- '\n)"}},
	{name: "row-quoted-identifiers-alias", class: "row expansion", want: "{M}",
		steps: []string{`INSERT INTO public."customers" AS c ("email", "id") VALUES ('{M}', 231)`}},
	{name: "row-returning-whole-row", class: "row expansion",
		steps: []string{`INSERT INTO customers (id, email) VALUES (232, '{M}') RETURNING email, customers::text`}},
	{name: "row-bytea-hex-literal", class: "row expansion", want: `\x{MH}`,
		steps: []string{`INSERT INTO customers (id, email) VALUES (233, '\x{MH}')`}},
	{name: "row-mixed-case-table", class: "row expansion", want: "{M}",
		steps: []string{`INSERT INTO "Crm"."Clients" (id, "Email") VALUES (234, '{M}')`}},

	// ---- search_path ----
	{name: "path-set-local-then-commit", class: "search_path",
		steps: []string{`BEGIN`, `SET LOCAL search_path = pg_catalog`, `COMMIT`, `INSERT INTO customers (id, email) VALUES (240, '{M}')`}},
	{name: "path-set-local-commit-one-query", class: "search_path",
		steps: []string{`BEGIN; SET LOCAL search_path = other; COMMIT; INSERT INTO customers (id, email) VALUES (241, '{M}')`}},
	{name: "path-set-then-rollback", class: "search_path",
		steps: []string{`BEGIN`, `SET search_path = other`, `ROLLBACK`, `INSERT INTO customers (id, email) VALUES (242, '{M}')`}},
	{name: "path-set-rolled-back-to-savepoint", class: "search_path",
		steps: []string{`BEGIN`, `SAVEPOINT s`, `SET search_path = other`, `ROLLBACK TO s`,
			`INSERT INTO customers (id, email) VALUES (243, '{M}')`, `COMMIT`}},
	{name: "path-set-in-failed-transaction", class: "search_path",
		steps: []string{`BEGIN`, `x: SELECT 1/0`, `x: SET search_path = other`, `ROLLBACK`, `INSERT INTO customers (id, email) VALUES (244, '{M}')`}},
	{name: "path-set-local-implicit-transaction", class: "search_path",
		steps: []string{`SET LOCAL search_path = other; SELECT 1`, `INSERT INTO customers (id, email) VALUES (245, '{M}')`}},
	{name: "path-set-config-not-executed-where-false", class: "search_path",
		steps: []string{`SELECT set_config('search_path', 'other', false) WHERE false`, `INSERT INTO customers (id, email) VALUES (246, '{M}')`}},
	{name: "path-set-config-not-executed-case", class: "search_path",
		steps: []string{`SELECT CASE WHEN false THEN set_config('search_path', 'other', false) END`, `INSERT INTO customers (id, email) VALUES (247, '{M}')`}},
	{name: "path-set-config-local-autocommit", class: "search_path",
		steps: []string{`SELECT set_config('search_path', 'other', true)`, `INSERT INTO customers (id, email) VALUES (248, '{M}')`}},
	{name: "path-set-config-executed", class: "search_path", params: map[string]string{"search_path": "other"},
		steps: []string{`SELECT set_config('search_path', 'public', false)`, `INSERT INTO customers (id, email) VALUES (249, '{M}')`}},
	{name: "path-set-to-default", class: "search_path",
		steps: []string{`SET search_path = other`, `SET search_path TO DEFAULT`, `INSERT INTO customers (id, email) VALUES (250, '{M}')`}},
	{name: "path-reset-all", class: "search_path",
		steps: []string{`SET search_path = other`, `RESET ALL`, `INSERT INTO customers (id, email) VALUES (251, '{M}')`}},
	{name: "path-discard-all", class: "search_path",
		steps: []string{`SET search_path = other`, `DISCARD ALL`, `INSERT INTO customers (id, email) VALUES (252, '{M}')`}},
	{name: "path-reset-search-path", class: "search_path",
		steps: []string{`SET search_path = other`, `RESET search_path`, `INSERT INTO customers (id, email) VALUES (253, '{M}')`}},
	// PostgreSQL applies the options' -c switches first, then the other
	// startup parameters, whatever their order in the packet: search_path
	// is public in both.
	{name: "path-startup-param-beats-options-after", class: "search_path",
		startup: [][2]string{{"options", "-c search_path=other"}, {"search_path", "public"}},
		steps:   []string{`INSERT INTO customers (id, email) VALUES (254, '{M}')`}},
	{name: "path-startup-param-beats-options-before", class: "search_path",
		startup: [][2]string{{"search_path", "public"}, {"options", "-c search_path=other"}},
		steps:   []string{`INSERT INTO customers (id, email) VALUES (254, '{M}')`}},
	{name: "path-options-last-wins-any-case", class: "search_path",
		params: map[string]string{"options": "-c search_path=other -c SEARCH_PATH=public"},
		steps:  []string{`INSERT INTO customers (id, email) VALUES (255, '{M}')`}},
	{name: "path-options-double-dash", class: "search_path", preStart: `ALTER DATABASE {DB} SET search_path = other;`,
		params: map[string]string{"options": "--search_path=public"},
		steps:  []string{`INSERT INTO customers (id, email) VALUES (256, '{M}')`}},
	{name: "path-role-in-database-beats-database", class: "search_path",
		preStart: `ALTER DATABASE {DB} SET search_path = other; ALTER ROLE postgres IN DATABASE {DB} SET search_path = public;`,
		steps:    []string{`INSERT INTO customers (id, email) VALUES (257, '{M}')`}},
	// The checker's own connection has the database's search_path too, so
	// it prints other.customers unqualified.
	{name: "path-database-default-other", class: "search_path", allow: []string{"other.customers", "customers"}, wire: true,
		preStart: `ALTER DATABASE {DB} SET search_path = other;`,
		steps:    []string{`INSERT INTO customers (id, email) VALUES (258, '{M}')`, `SET search_path = public`, `INSERT INTO customers (id, email) VALUES (259, '{M}x')`}},
	{name: "path-quoted-mixed-case-schema", class: "search_path", want: "{M}",
		steps: []string{`SET search_path = "Crm"`, `INSERT INTO "Clients" (id, "Email") VALUES (260, '{M}')`}},
	{name: "path-quoted-schema-with-lowercase-namesake", class: "search_path", want: "{M}",
		steps: []string{`SET search_path = "Crm", crm`, `INSERT INTO "Clients" (id, "Email") VALUES (261, '{M}')`}},
	{name: "path-unquoted-folds-to-namesake", class: "search_path", allow: []string{"crm.clients"}, wire: true,
		steps: []string{`SET search_path = Crm`, `INSERT INTO Clients (id, "Email") VALUES (262, '{M}')`}},
	{name: "path-set-config-quoted-schema", class: "search_path", want: "{M}",
		steps: []string{`SELECT set_config('search_path', '"Crm"', false)`, `INSERT INTO "Clients" (id, "Email") VALUES (263, '{M}')`}},
	{name: "path-temp-table-shadows", class: "search_path", wire: true,
		steps: []string{`CREATE TEMP TABLE customers (LIKE public.customers)`, `INSERT INTO customers (id, email) VALUES (264, '{M}')`}},
	{name: "path-temp-table-dropped", class: "search_path",
		steps: []string{`CREATE TEMP TABLE customers (LIKE public.customers)`, `DROP TABLE pg_temp.customers`, `INSERT INTO customers (id, email) VALUES (265, '{M}')`}},
	{name: "path-temp-table-after-public", class: "search_path",
		steps: []string{`CREATE TEMP TABLE customers (LIKE public.customers)`, `SET search_path = public, pg_temp`, `INSERT INTO customers (id, email) VALUES (266, '{M}')`}},
	{name: "path-namesake-first", class: "search_path", allow: []string{"other.customers"}, wire: true,
		steps: []string{`SET search_path = other, public`, `INSERT INTO customers (id, email) VALUES (267, '{M}')`}},
	// pgcloak qualifies a name that several schemas hold with the schema it
	// planned for (other.customers): the namesake gone, the server refuses
	// the statement instead of writing plaintext into public.customers.
	{name: "path-namesake-dropped-around-pgcloak", class: "search_path", asPlanned: "42P01", wire: true,
		steps: []string{`SET search_path = other, public`, `d: DROP TABLE other.customers`, `INSERT INTO customers (id, email) VALUES (268, '{M}')`}},
	{name: "path-user-schema-dropped-around-pgcloak", class: "search_path", asPlanned: "42P01", wire: true,
		preStart: `CREATE SCHEMA postgres; CREATE UNLOGGED TABLE postgres.customers (id int PRIMARY KEY, email bytea, phone bytea, note text);`,
		steps:    []string{`d: DROP TABLE postgres.customers`, `INSERT INTO customers (id, email) VALUES (269, '{M}')`}},
	{name: "path-pg-catalog-first", class: "search_path",
		steps: []string{`SET search_path = pg_catalog, public`, `INSERT INTO customers (id, email) VALUES (270, '{M}')`}},
	// The function changes search_path where pgcloak cannot see; pgcloak
	// qualifies the name with the schema it planned for, so the row goes to
	// the unprotected namesake as planned (in plaintext, which is right for
	// it), never into the protected table unencrypted.
	{name: "path-set-by-function", class: "search_path", params: map[string]string{"search_path": "other"}, allow: []string{"other.customers", "customers"}, wire: true,
		preStart: `CREATE FUNCTION use_public() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('search_path', 'public', false); END$$;`,
		steps:    []string{`SELECT public.use_public()`, `INSERT INTO customers (id, email) VALUES (271, '{M}')`}},
	{name: "path-set-in-do-block", class: "search_path", params: map[string]string{"search_path": "other"}, allow: []string{"other.customers", "customers"}, wire: true,
		steps: []string{`DO $$BEGIN SET search_path = public; END$$`, `INSERT INTO customers (id, email) VALUES (272, '{M}')`}},

	// ---- settings that change how values are read ----
	{name: "set-scs-off-by-set-config", wire: true, class: "settings",
		steps: []string{`SELECT set_config('standard_conforming_strings', 'off', false)`, fmt.Sprintf(fcSCSStatement, 280)}},
	{name: "set-scs-off-by-startup-options", wire: true, class: "settings", params: map[string]string{"options": "-c standard_conforming_strings=off"},
		steps: []string{fmt.Sprintf(fcSCSStatement, 281)}},
	{name: "set-scs-off-by-startup-parameter", wire: true, class: "settings", params: map[string]string{"standard_conforming_strings": "off"},
		steps: []string{fmt.Sprintf(fcSCSStatement, 282)}},
	{name: "set-scs-off-database-default", wire: true, class: "settings", preStart: `ALTER DATABASE {DB} SET standard_conforming_strings = off;`,
		steps: []string{fmt.Sprintf(fcSCSStatement, 283)}},
	{name: "set-scs-off-set-local", wire: true, class: "settings",
		steps: []string{`BEGIN`, `SET LOCAL standard_conforming_strings = off`, fmt.Sprintf(fcSCSStatement, 284), `COMMIT`}},
	{name: "set-scs-off-in-do-block", wire: true, class: "settings",
		steps: []string{`DO $$BEGIN SET standard_conforming_strings = off; END$$`, fmt.Sprintf(fcSCSStatement, 285)}},
	{name: "set-scs-on-backslash-literal", class: "settings", want: "{M}",
		steps: []string{`INSERT INTO customers (id, note, email) VALUES (286, 'a\', '{M}')`}},
	{name: "set-bytea-output-escape-returning", class: "settings", want: "{M}",
		steps: []string{`SET bytea_output = escape`, `INSERT INTO customers (id, email) VALUES (287, '{M}') RETURNING email`}},
	{name: "set-client-encoding-latin1", class: "client encodings", want: "{M}\u00e9",
		steps: []string{`SET client_encoding = 'LATIN1'`, "INSERT INTO customers (id, email) VALUES (288, '{M}\xe9')"}},
	{name: "set-client-encoding-latin1-startup", class: "client encodings", want: "{M}\u00e9", params: map[string]string{"client_encoding": "LATIN1"},
		steps: []string{"INSERT INTO customers (id, email) VALUES (289, '{M}\xe9')"}},
	{name: "set-client-encoding-latin1-parameter", class: "client encodings", want: "{M}\u00e9", run: func(r *fcRun) {
		r.q(`SET client_encoding = 'LATIN1'`)
		r.ext(`INSERT INTO customers (id, email) VALUES ($1, $2)`, "290", "{M}\xe9")
	}},
	{name: "set-names-latin1", class: "client encodings", want: "{M}\u00e9",
		steps: []string{`SET NAMES 'LATIN1'`, "INSERT INTO customers (id, email) VALUES (291, '{M}\xe9')"}},
	{name: "set-client-encoding-by-set-config", class: "client encodings", want: "{M}\u00e9",
		steps: []string{`SELECT set_config('client_encoding', 'LATIN1', false)`, "INSERT INTO customers (id, email) VALUES (292, '{M}\xe9')"}},
	{name: "set-client-encoding-sjis", class: "client encodings", want: "{M}\u8868",
		// 表 is 0x95 0x5C in Shift-JIS: its second byte is a backslash.
		steps: []string{`SET client_encoding = 'SJIS'`, "INSERT INTO customers (id, email) VALUES (293, '{M}\x95\x5c')"}},
	{name: "set-client-encoding-sjis-scs-off", wire: true, class: "client encodings",
		// With standard_conforming_strings off, a byte-wise reader takes
		// 表's 0x5C for a backslash escaping the quote; PostgreSQL does not.
		steps: []string{`SET client_encoding = 'SJIS'`, `SELECT set_config('standard_conforming_strings', 'off', false)`,
			"INSERT INTO customers (id, note, email) VALUES (294, 'x\x95\x5c' || '/*' || '', '{M}') -- */, NULL)"}},
	{name: "set-client-encoding-euc-jp", class: "client encodings", want: "{M}\u65e5\u672c",
		steps: []string{`SET client_encoding = 'EUC_JP'`, "INSERT INTO customers (id, email) VALUES (295, '{M}\xc6\xfc\xcb\xdc')"}},

	// ---- schema changes through pgcloak ----
	{name: "ddl-rename-column", class: "schema changes",
		steps: []string{`ALTER TABLE customers RENAME COLUMN email TO e2`, `INSERT INTO customers (id, e2) VALUES (300, '{M}')`}},
	{name: "ddl-rename-table", class: "schema changes",
		steps: []string{`ALTER TABLE customers RENAME TO clients2`, `INSERT INTO clients2 (id, email) VALUES (301, '{M}')`}},
	{name: "ddl-set-schema", class: "schema changes",
		steps: []string{`ALTER TABLE customers SET SCHEMA other2`, `INSERT INTO other2.customers (id, email) VALUES (302, '{M}')`}},
	{name: "ddl-rename-schema", class: "schema changes",
		steps: []string{`ALTER SCHEMA "Crm" RENAME TO crm2`, `INSERT INTO crm2."Clients" (id, "Email") VALUES (303, '{M}')`}},
	{name: "ddl-alter-type-text", class: "schema changes",
		// The backstop (setup b) would not survive the change: a DBA drops it first.
		steps: []string{`ALTER TABLE customers DROP CONSTRAINT IF EXISTS pgcloak_email_encrypted; ALTER TABLE customers ALTER COLUMN email TYPE text USING email::text`,
			`INSERT INTO customers (id, email) VALUES (304, '{M}')`}},
	{name: "ddl-alter-type-bytea-domain", class: "schema changes",
		steps: []string{`CREATE DOMAIN dmail AS bytea`, `ALTER TABLE customers ALTER COLUMN email TYPE dmail`, `INSERT INTO customers (id, email) VALUES (305, '{M}')`}},
	{name: "ddl-drop-and-add-column", class: "schema changes",
		steps: []string{`ALTER TABLE customers DROP COLUMN email`, `ALTER TABLE customers ADD COLUMN email bytea`, `INSERT INTO customers (id, email) VALUES (306, '{M}')`}},
	{name: "ddl-drop-and-recreate-table", class: "schema changes",
		steps: []string{`DROP TABLE customers`, `CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text)`,
			`INSERT INTO customers (id, email) VALUES (307, '{M}')`}},
	{name: "ddl-swap-column-names", class: "schema changes",
		steps: []string{`ALTER TABLE customers RENAME COLUMN email TO tmp; ALTER TABLE customers RENAME COLUMN note TO email; ALTER TABLE customers RENAME COLUMN tmp TO note`,
			`INSERT INTO customers (id, note) VALUES (308, '{M}')`}},
	{name: "ddl-rename-then-recreate-old-name", class: "schema changes",
		steps: []string{`ALTER TABLE customers RENAME TO customers_old`, `CREATE TABLE customers (LIKE customers_old INCLUDING ALL)`,
			`INSERT INTO customers_old (id, email) VALUES (309, '{M}')`}},
	{name: "ddl-set-default-literal", class: "schema changes",
		steps: []string{`ALTER TABLE customers ALTER COLUMN email SET DEFAULT '{M}'`, `INSERT INTO customers (id) VALUES (310)`}},
	{name: "ddl-new-child-table-inherits", class: "schema changes",
		steps: []string{`CREATE TABLE kid (LIKE customers INCLUDING ALL)`, `ALTER TABLE kid INHERIT customers`,
			`INSERT INTO kid (id, email) VALUES (311, '{M}')`}},
	{name: "ddl-drop-backstop-then-do-block", class: "schema changes", only: "b",
		steps: []string{`ALTER TABLE customers DROP CONSTRAINT pgcloak_email_encrypted`,
			`DO $$BEGIN INSERT INTO customers (id, email) VALUES (312, '{M}'); END$$`}},

	// ---- the same schema changes made directly, around pgcloak ----
	{name: "ddld-rename-column-same-session", class: "schema changes around pgcloak", notReady: "public.customers.email", run: fcDirectDDL(
		`ALTER TABLE customers RENAME COLUMN email TO e2`, `INSERT INTO customers (id, e2) VALUES (320, '{M}')`, false)},
	{name: "ddld-rename-column-new-session", class: "schema changes around pgcloak", notReady: "public.customers.email", run: fcDirectDDL(
		`ALTER TABLE customers RENAME COLUMN email TO e2`, `INSERT INTO customers (id, e2) VALUES (321, '{M}')`, true)},
	{name: "ddld-rename-table-same-session", only: fcServerSide, class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers RENAME TO clients2`, `INSERT INTO clients2 (id, email) VALUES (322, '{M}')`, false)},
	{name: "ddld-rename-table-new-session", only: fcServerSide, class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers RENAME TO clients2`, `INSERT INTO clients2 (id, email) VALUES (323, '{M}')`, true)},
	{name: "ddld-set-schema-same-session", only: fcServerSide, class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers SET SCHEMA other2`, `INSERT INTO other2.customers (id, email) VALUES (324, '{M}')`, false)},
	{name: "ddld-set-schema-new-session", only: fcServerSide, class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers SET SCHEMA other2`, `INSERT INTO other2.customers (id, email) VALUES (325, '{M}')`, true)},
	{name: "ddld-alter-type-text-same-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers DROP CONSTRAINT IF EXISTS pgcloak_email_encrypted; ALTER TABLE customers ALTER COLUMN email TYPE text USING email::text`,
		`INSERT INTO customers (id, email) VALUES (326, '{M}')`, false)},
	{name: "ddld-alter-type-text-new-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers DROP CONSTRAINT IF EXISTS pgcloak_email_encrypted; ALTER TABLE customers ALTER COLUMN email TYPE text USING email::text`,
		`INSERT INTO customers (id, email) VALUES (327, '{M}')`, true)},
	{name: "ddld-drop-and-add-column-same-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers DROP COLUMN email; ALTER TABLE customers ADD COLUMN email bytea`,
		`INSERT INTO customers (id, email) VALUES (328, '{M}')`, false)},
	{name: "ddld-drop-and-add-column-new-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers DROP COLUMN email; ALTER TABLE customers ADD COLUMN email bytea`,
		`INSERT INTO customers (id, email) VALUES (329, '{M}')`, true)},
	{name: "ddld-drop-and-recreate-table-same-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`DROP TABLE customers; CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text)`,
		`INSERT INTO customers (id, email) VALUES (330, '{M}')`, false)},
	{name: "ddld-drop-and-recreate-table-new-session", class: "schema changes around pgcloak", run: fcDirectDDL(
		`DROP TABLE customers; CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text)`,
		`INSERT INTO customers (id, email) VALUES (331, '{M}')`, true)},
	{name: "ddld-swap-column-names-new-session", only: fcServerSide, class: "schema changes around pgcloak", run: fcDirectDDL(
		`ALTER TABLE customers RENAME COLUMN email TO tmp; ALTER TABLE customers RENAME COLUMN note TO email; ALTER TABLE customers RENAME COLUMN tmp TO note`,
		`INSERT INTO customers (id, note) VALUES (332, '{M}')`, true)},
	{name: "ddld-drop-backstop-then-do-block", class: "schema changes around pgcloak", only: "b", run: fcDirectDDL(
		`ALTER TABLE customers DROP CONSTRAINT pgcloak_email_encrypted`,
		`DO $$BEGIN INSERT INTO customers (id, email) VALUES (333, '{M}'); END$$`, true)},

	// ---- pipelined sequences ----
	{name: "pipe-refused-then-insert-same-sync", class: "pipelines", run: func(r *fcRun) {
		// After an error the server skips to Sync; a proxy that refuses the
		// first statement must not run the second either.
		r.rt("pipeline: refused SELECT, INSERT, Sync",
			fcParse("", `SELECT id FROM customers WHERE email LIKE 'x%'`), fcBind(""), fcExecute(),
			fcParse("", r.sub(`INSERT INTO customers (id, email) VALUES (340, '{M}')`)), fcBind(""), fcExecute(), fcSync())
	}},
	{name: "pipe-failed-statement-skips-set-path", class: "pipelines", run: func(r *fcRun) {
		r.expect(r.rt("pipeline: 1/0, SET search_path (skipped by the server), Sync",
			fcParse("", `SELECT 1/0`), fcBind(""), fcExecute(),
			fcParse("", `SET search_path = other`), fcBind(""), fcExecute(), fcSync()))
		r.ext(`INSERT INTO customers (id, email) VALUES ($1, $2)`, "341", "{M}")
	}},
	{name: "pipe-failed-statement-skips-close", class: "pipelines", run: func(r *fcRun) {
		fcPrepareProtocol(r, "s", `INSERT INTO customers (id, email) VALUES ($1, $2)`)
		r.expect(r.rt("pipeline: 1/0, Close s, Parse s (both skipped by the server), Sync",
			fcParse("", `SELECT 1/0`), fcBind(""), fcExecute(),
			fcCloseS("s"), fcParse("s", `SELECT $1::int, $2::text`), fcSync()))
		fcBindExec(r, "s", "342", "{M}")
	}},
	{name: "pipe-failing-reparse-sync-bind-one-write", class: "pipelines", run: func(r *fcRun) {
		fcPrepareProtocol(r, "s", `INSERT INTO customers (id, email) VALUES ($1, $2)`)
		res := r.rt("pipeline: Parse s (fails: exists), Sync, Bind s, Execute, Sync",
			fcParse("s", `SELECT $1::int, $2::text`), fcSync(),
			fcBind("s", "343", r.M), fcDescribeP(), fcExecute(), fcSync())
		// The Parse's 42P05 is the scenario; what follows is the probe.
		if len(res.errs) > 0 && res.errs[0].code == "42P05" {
			res.errs[0].expected = true
		}
	}},
	{name: "pipe-prepare-describe-bind-one-write", class: "pipelines", want: "{M}", run: func(r *fcRun) {
		// What pgconn's pipeline mode sends for Prepare then QueryPrepared.
		r.rt("pipeline: Parse p1, Describe, Bind, Describe, Execute, Sync",
			fcParse("p1", `INSERT INTO customers (id, email) VALUES ($1, $2)`), fcDescribeS("p1"),
			fcBind("p1", "344", r.M), fcDescribeP(), fcExecute(), fcSync())
	}},
	{name: "pipe-transaction-set-local-then-insert", class: "pipelines", run: func(r *fcRun) {
		r.rt("pipeline: BEGIN, SET LOCAL search_path, COMMIT, INSERT, Sync",
			fcParse("", `BEGIN`), fcBind(""), fcExecute(),
			fcParse("", `SET LOCAL search_path = other`), fcBind(""), fcExecute(),
			fcParse("", `COMMIT`), fcBind(""), fcExecute(),
			fcParse("", `INSERT INTO customers (id, email) VALUES ($1, $2)`), fcBind("", "345", r.M), fcExecute(), fcSync())
	}},
	{name: "pipe-rollback-then-insert", class: "pipelines", run: func(r *fcRun) {
		r.rt("pipeline: BEGIN, SET search_path, ROLLBACK, INSERT, Sync",
			fcParse("", `BEGIN`), fcBind(""), fcExecute(),
			fcParse("", `SET search_path = other`), fcBind(""), fcExecute(),
			fcParse("", `ROLLBACK`), fcBind(""), fcExecute(),
			fcParse("", `INSERT INTO customers (id, email) VALUES ($1, $2)`), fcBind("", "346", r.M), fcExecute(), fcSync())
	}},
	{name: "pipe-query-then-extended-one-write", class: "pipelines", run: func(r *fcRun) {
		r.rt("pipeline: Query set_config (not executed), Parse/Bind/Execute INSERT, Sync",
			&pgproto3.Query{String: `SELECT set_config('search_path', 'other', false) WHERE false`},
			fcParse("", `INSERT INTO customers (id, email) VALUES ($1, $2)`), fcBind("", "347", r.M), fcExecute(), fcSync())
	}},
	{name: "pipe-close-reparse-other-columns-one-write", class: "pipelines", run: func(r *fcRun) {
		r.rt("pipeline: Parse s, Close s, Parse s (other columns), Bind s, Execute, Sync",
			fcParse("s", `INSERT INTO customers (id, email, note) VALUES ($1, $2, $3)`), fcCloseS("s"),
			fcParse("s", `INSERT INTO customers (id, note, email) VALUES ($1, $2, $3)`),
			fcBind("s", "348", "n", r.M), fcExecute(), fcSync())
	}},
	{name: "pipe-multi-statement-after-error", class: "pipelines", run: func(r *fcRun) {
		// The server stops the Query at the first error: the INSERT never
		// runs, and its plaintext has no business reaching the server.
		r.qx(`SELECT 1/0; INSERT INTO customers (id, email) VALUES (349, '{M}')`)
	}},
	{name: "pipe-portal-suspended-returning", class: "pipelines", run: func(r *fcRun) {
		r.rt("pipeline: INSERT … RETURNING executed one row at a time",
			fcParse("", `INSERT INTO customers (id, email) VALUES ($1, $2), ($3, $4) RETURNING id, email`),
			fcBind("", "350", r.M, "351", r.M+"-2"), fcDescribeP(), &pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{MaxRows: 1}, fcSync())
	}},
}

// withDirect runs f with a query function on a direct connection.
func (r *fcRun) withDirect(f func(q func(sql string, dest ...any) error) error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	d := r.e.directConn(ctx)
	defer d.Close(ctx)
	if err := f(func(sql string, dest ...any) error { return d.QueryRow(ctx, sql).Scan(dest...) }); err != nil {
		r.broken = append(r.broken, fmt.Sprintf("direct query: %v", err))
	}
}
