// Package copyfmt rewrites COPY data streams: it encrypts the protected
// columns of `COPY t [(cols)] FROM STDIN` and decrypts them in `COPY … TO
// STDOUT`, in the text, CSV and binary formats, while streaming.
//
// # Use
//
// The session parses the COPY statement, converts its options
// (pg_query's DefElems) to []Option and calls ParseOptions; it knows the
// column list (Config.Columns: the named columns, or all columns of the
// table in order, generated columns left out, as PostgreSQL does) and which
// of them are protected. Then, per COPY:
//
//	r, err := copyfmt.NewRewriter(cfg)  // or r.Reset(cfg) to reuse buffers
//	for each CopyData payload p:
//	    out, err = r.Write(out[:0], p)  // zero or more complete rows
//	    send out as CopyData (if not empty; it may be cut anywhere)
//	on CopyDone:
//	    out, err = r.Close(out[:0])     // a last row without line end
//	    send out, then CopyDone
//
// On any error during COPY FROM, send CopyFail upstream (the server then
// stores nothing, and answers with an ErrorResponse that the session
// replaces with this error) and report the error to the client. For COPY TO
// the same Rewriter with Direction Out turns the server's rows back into
// the logical values.
//
// Lifetimes: Write does not keep chunk (an incomplete row is copied);
// everything produced is appended to dst, which must not overlap chunk;
// the value handed to the FieldFunc is valid only during the call. Memory
// is one row (bounded by Config.MaxRow) plus scratch buffers the size of a
// field, whatever the stream size; in steady state Write allocates nothing.
//
// # What is rewritten
//
// Only the protected fields; every other byte — other fields with their
// escapes and quotes, delimiters, line ends (LF, CR or CRLF as the client
// wrote them), the header line, the binary header and its extension, NULLs
// — is copied as it came. A protected field becomes:
//
//	       COPY FROM (client → server)              COPY TO (server → client)
//	text   \\x<hex> (bytea hex, backslash escaped)   the value, escaped like CopyAttributeOutText
//	CSV    \x<hex>, quoted if it holds the           the value, quoted like CopyAttributeOutCSV
//	       delimiter or quote (a hex digit, x or \)  (FORCE_QUOTE honoured)
//	       or spells the NULL string
//	binary the raw ciphertext                        the value's binary form
//
// In text format, a hex string that spells the NULL string is written
// with its backslash as the octal escape \134 instead. COPY TO accepts both
// bytea_output formats (hex and escape) from the server.
//
// NULL stays NULL: the FieldFunc is not called. In CSV, FORCE_NOT_NULL
// turns an unquoted NULL string into a value (which is encrypted), and a
// quoted field equal to the NULL string in a FORCE_NULL column is left as
// it is for the server to make NULL.
//
// # Fidelity to PostgreSQL
//
// The parser is PostgreSQL 15's (copyfromparse.c, CopyReadLineText,
// CopyReadAttributesText/CSV, the binary tuple reader), so that the rows
// and fields pgcloak sees are exactly those the server will see, and
// malformed data fails with the server's error: SQLSTATE, message, hint and
// the CONTEXT line ("COPY t, line 3: \"…\"", "COPY t, line 3, column c").
// Among the details it keeps:
//
//   - text: escapes \b \f \n \r \t \v, octal \ooo and \xhh (a hex escape
//     can swallow an upper-case delimiter), any other escaped byte taken
//     literally, a backslash before a line end continuing the line, a
//     trailing backslash at the end of the data dropped; the end marker \.
//     anywhere in a line (PostgreSQL 15 takes the data before it as the
//     last line and ignores everything after), with "end-of-copy marker
//     corrupt" and "does not match previous newline style";
//   - line ends: the first line decides LF, CR or CRLF, and a different
//     one later is an error ("literal carriage return found in data", …);
//   - CSV: quotes anywhere in a field, QUOTE and ESCAPE, line ends inside
//     quotes are data (and count as lines in error contexts, as PostgreSQL
//     counts them), \. alone on a line ends the data, "unterminated CSV
//     quoted field";
//   - NULL: the raw field equals the NULL string (text), unquoted (CSV);
//   - UTF-8 (COPY FROM): the data is checked as PostgreSQL checks it, and an
//     invalid byte fails exactly when PostgreSQL's reader would reach it
//     (including its look-ahead); fields whose escapes make bytes ≥ 0x80 or
//     NUL are checked after de-escaping;
//   - binary: signature, flags (WITH OIDS, critical bits), header extension,
//     field count, -1 for NULL, "invalid field size", "unexpected EOF in
//     COPY data", the -1 trailer and "received copy data after EOF marker";
//     a stream may end without the trailer, and a single stray byte at a
//     tuple boundary is ignored, as PostgreSQL does;
//   - "missing data for column", "extra data after last expected column",
//     zero-column tables.
//
// The tests compare all of this with a real PostgreSQL: thousands of
// hand-written and random inputs under ten option sets (values stored and
// errors must match), the Rewriter's output copied back into bytea columns
// (values must round-trip), and COPY TO of bytea columns through the
// Rewriter against COPY TO of the same values as text (byte for byte).
//
// # Known differences
//
//   - PostgreSQL runs the input function of each column as it goes; the
//     Rewriter does not validate values of unprotected columns (the server
//     does), and it checks a row's structure before it calls the FieldFunc.
//     So when one row has both a bad value and a structural error, the
//     error reported may be the other one than PostgreSQL's (both are
//     errors; nothing is stored).
//   - Encodings: UTF8 and SQL_ASCII only (Config.Encoding). Options of
//     later releases (DEFAULT, ON_ERROR, LOG_VERBOSITY) are refused like
//     PostgreSQL 15 refuses them; PostgreSQL 18's stricter \. rules are not
//     modelled (the Rewriter ends the data at the marker and forwards
//     nothing after it, so the server never sees one).
//   - COPY TO with bytea_output = escape: a value can spell the NULL string
//     (PostgreSQL's own output is ambiguous then); ciphertext never does,
//     as its header is not printable.
//   - A row longer than Config.MaxRow (default 64 MiB) is refused (54000).
//     A binary field whose length word claims more is waited for without
//     keeping its bytes: if the data ends first the error is PostgreSQL's
//     "unexpected EOF in COPY data" (a corrupted length word), as it would
//     be without pgcloak.
//
// # Performance
//
// BenchmarkRewriter (2 shared cores, linux/amd64, go1.26): 10,000 rows × 5
// columns, 3 of them protected, in 64 KiB payloads, a FieldFunc that adds
// or strips 28 bytes; 0 allocations per row in every case:
//
//	            COPY FROM (encrypt side)      COPY TO (decrypt side)        nothing protected
//	text        250-290 MB/s, 3.1-3.5 M rows/s  1.3-1.6 M rows/s            470-600 MB/s
//	CSV         240-300 MB/s, 2.9-3.7 M rows/s  1.5-2.0 M rows/s            420-590 MB/s
//	binary      1.0-1.2 GB/s,  10-12 M rows/s   9-12 M rows/s               2.4-2.6 GB/s
//
// COPY FROM in text and CSV writes about four times what it reads (hex
// doubles each protected value and the ciphertext overhead); the hex
// encoder is about a third of the time. bench_test.go has the details.
package copyfmt
