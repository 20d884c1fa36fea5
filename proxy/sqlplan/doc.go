// Package sqlplan decides, for each SQL statement a client sends, which
// literals and parameters carry values of protected columns (so the session
// encrypts them) and which statements must be refused because pgcloak cannot
// keep plaintext out of a protected column, or cannot give a right answer.
//
// Reads are not planned here: the row codec decrypts result columns by the
// RowDescription's table OID and attribute number. This package handles
// writes and comparisons, from the parse tree of the real PostgreSQL grammar
// (pg_query_go, PostgreSQL 17's parser).
//
//	session ── Analyze(sql, catalog, *Settings) ──▶ Analysis | *Refusal
//	   │  for each Statement, in order:
//	   │    Edits:   sql[Start:End] ──▶ '\x<ciphertext>'::bytea  (rest byte-identical);
//	   │             or a schema qualifying an ambiguous name; or a backstop added to DDL
//	   │    Params:  $n ──▶ encrypt the Bind value for the column
//	   │    Joins:   check both columns share a search_group
//	   │    Effects: SET/RESET/set_config, transaction control, PREPARE, EXECUTE,
//	   │             DEALLOCATE, DISCARD: what the statement changes in the session,
//	   │             applied by the session when the server confirms it (settings.go)
//
// # Cost
//
// Analyze first looks at the text without parsing: if it mentions no
// protected table name (as a word, any case) and none of the words of the
// statements whose state it tracks, it returns nil at once (0.2–0.4 µs,
// no allocation). Otherwise it parses (about 25 µs for a short INSERT on a
// small VM, cgo included), scans tokens when a literal must be delimited
// (about 13 µs) and re-parses a cast literal to check its range. Sessions
// that see the same text again (extended protocol) gain from caching plans
// by text and search_path.
//
// # What is planned
//
// A protected column is one the Catalog returns for the resolved table
// (schema-qualified, or unqualified through search_path; quoted names are
// case-sensitive as in PostgreSQL).
//
//   - INSERT … VALUES, with or without a column list (then the Catalog gives
//     the column order), one or many rows; each value for a protected column
//     must be a literal (possibly signed or cast: -42, 'x'::text,
//     CAST('x' AS text), DATE '2024-01-01'), a parameter, NULL or DEFAULT.
//     INSERT … SELECT may feed protected columns only literals and
//     parameters, or the same column's own ciphertext.
//   - UPDATE … SET col = literal | $n | NULL | DEFAULT, (a, b) = (…, …); and
//     INSERT … ON CONFLICT … DO UPDATE SET col = EXCLUDED.col or the same.
//     A column's own ciphertext (SET email = EXCLUDED.email, = email) may be
//     written back to it: ciphertext is bound to its column, not its row.
//   - Deterministic columns compare by equality: col = / <> / IS [NOT]
//     DISTINCT FROM literal | $n, col [NOT] IN (literals, $n), col IN
//     (SELECT col2 …), CASE col WHEN literal; in WHERE, JOIN ON/USING,
//     HAVING, anywhere. col = other_col of two different deterministic
//     columns is reported in Joins: the session allows it only within one
//     search_group. GROUP BY, DISTINCT, DISTINCT ON, PARTITION BY and
//     count(DISTINCT col) work on deterministic columns.
//   - IS [NOT] NULL and count(col) work on every protected column.
//   - A protected column may be selected plainly (col, t.col, t.*, *) in a
//     top-level select list, RETURNING, a cursor, and in FROM subqueries and
//     CTEs that the outer query selects plainly: PostgreSQL reports the
//     base column for those, so the row codec decrypts them.
//   - PREPARE (the inner statement's Params are kept for EXECUTE), EXECUTE
//     (arguments located), DEALLOCATE, DISCARD; SET [LOCAL], RESET, SET … TO
//     DEFAULT, SET SCHEMA, set_config(…) of the settings pgcloak tracks
//     (Settings), BEGIN/COMMIT/ROLLBACK/savepoints: reported as Effects and
//     followed by the later statements of the same text. A set_config whose
//     setting name is not a literal (pg_dump's first query) is reported as
//     UnknownSetting. EXPLAIN is planned like the statement it explains
//     (EXPLAIN ANALYZE runs it).
//   - An unqualified table name that exists in several schemas is qualified
//     with the schema it resolved to (an Edit), so the server writes to the
//     table pgcloak planned whatever its own search_path is.
//   - CREATE TABLE and ALTER TABLE … ADD COLUMN of a protected column (bytea,
//     no default) get the column's backstop; DROP/RENAME/ALTER TYPE/SET
//     SCHEMA of protected tables, columns and backstops are refused
//     (ddl.go).
//   - COPY table [(columns)] FROM STDIN / TO STDOUT, and COPY (query) TO
//     STDOUT: Statement.Copy names the protected column behind each field.
//     COPY's output carries no column identity, so in COPY (query) a
//     protected column is decrypted by its position: it must be selected
//     plainly (as at the top level of a SELECT, through aliases, joins, FROM
//     subqueries and CTEs) at a position pgcloak knows. A query with no
//     protected output gets no Copy (its literals are still planned).
//
// # What is refused (fail closed)
//
// Every refusal is a *Refusal naming the column (or table) and the reason,
// with SQLSTATE 0A000 unless said otherwise. The statement must not be
// forwarded.
//
//   - A value for a protected column that the server would compute: a
//     function call, an operator, another column, a subquery, CASE,
//     COALESCE, …; a cast on a parameter ($1::text: the server receives
//     bytea); a bit-string literal.
//   - On a randomized column: any comparison (=, <>, <, IN, LIKE, BETWEEN,
//     ANY), GROUP BY, DISTINCT, PARTITION BY, count(DISTINCT). On any
//     protected column: ordering (<, >, BETWEEN, ORDER BY, window ORDER
//     BY, GREATEST/LEAST), LIKE/ILIKE/SIMILAR TO, any function but count,
//     any operator, cast, COLLATE, field or element access, = ANY(array),
//     row comparisons, NULLIF; comparing a deterministic column with a
//     server-computed value or an unprotected column.
//   - A protected column as the value of an expression that would return it
//     without its identity: in CASE results, COALESCE, ROW(…), arrays, a
//     scalar or ARRAY subquery, a UNION/INTERSECT/EXCEPT branch, a VALUES
//     list, INSERT … SELECT into another column, CREATE TABLE AS / SELECT
//     INTO; a whole-row reference (SELECT c FROM customers c, ROW(c.*)).
//   - The same $n bound to two different protected columns, or bound to one
//     and also used as plaintext elsewhere; a literal both encrypted and
//     compared with plaintext.
//   - Column alias lists over protected columns (FROM customers AS c(a, b),
//     subqueries and CTEs); NATURAL JOIN when the compared columns are
//     unknown; FULL JOIN … USING on protected columns; an unqualified name
//     matching two different protected columns.
//   - COPY of a protected table with a server-side file or program, COPY …
//     WHERE; COPY (query) TO a server-side file or program with a protected
//     output; COPY (query) TO STDOUT whose protected output's position is
//     not certain (a * over a relation whose columns are unknown, or over
//     columns merged by JOIN … USING / NATURAL JOIN), or is lost as in a
//     SELECT (expressions, UNION branches: one COPY per branch instead).
//   - MERGE into or using a protected table.
//   - CREATE VIEW over protected tables (pgcloak could not follow writes
//     through it before its next catalog read; views created directly are
//     read from the catalog and attributed by ViewOutputs), materialized
//     views that return a protected column; row expansion ((r).*) into a
//     protected table's columns; an unknown column of a protected table in a
//     write (42703: the catalog is read again first); DO blocks, CREATE FUNCTION/PROCEDURE and CREATE RULE whose text or
//     unescaped body mentions a protected table; ALTER TABLE … SET DEFAULT (non-NULL) on a protected
//     column; SET standard_conforming_strings off (the literals would be
//     misread); PREPARE with a declared non-bytea type for a protected
//     parameter.
//   - (In the session, not here.) While the server reports
//     standard_conforming_strings off by other means (a role or database
//     default, startup options), a text that needs planning and holds a
//     backslash: without one, a text lexes the same either way. pgcloak's
//     own ciphertext literals are E'\x…', read the same either way.
//   - An unqualified protected table name after a RESET of search_path in
//     the same text (its value is not known here).
//   - A text that does not parse and mentions a protected table name:
//     SQLSTATE 42601 with the parser's message. One that mentions none is
//     left to the server (nil plan, nil error).
//   - A text holding a NUL byte; a panic inside the analyzer (SQLSTATE
//     XX000).
//
// Statements on unprotected tables come back with an empty plan.
//
// # Known limits
//
// What the text does not show is not seen: writes made by functions,
// procedures, triggers and rules that already exist, and dynamic SQL that
// builds a table name at run time. The database's backstop refuses their
// plaintext (docs/failclosed.md). Parameters wrapped in a cast ($1::date)
// are refused rather than rewritten; = ANY($1) over an array of values is
// refused.
package sqlplan
