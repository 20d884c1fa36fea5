// Package values holds the logical types of protected columns and the
// conversions between what clients send and receive and the canonical
// plaintext that pgcloak encrypts.
//
// A protected column is bytea in PostgreSQL; the application sees its
// logical type. The relay uses this package at four points:
//
//	Parse                 declared parameter OIDs: logical → bytea (Type.OID)
//	ParameterDescription  bytea → logical (Type.OID)
//	RowDescription        bytea → Type.OID, Type.Len, Type.Typmod
//	Bind, literals        client value (text or binary) ─Canonical─▶ plaintext ─▶ encrypt
//	DataRow               decrypt ─▶ plaintext ─Encode─▶ text or binary, as the client asked
//
// The plaintext is the canonical text form of the logical value, so a client
// that sends text and one that sends binary store the same bytes (and, in
// deterministic mode, the same ciphertext): '007' and binary int4 7 are
// both "7".
//
// # Canonical forms
//
// These are part of pgcloak's on-disk format: every stored value of every
// protected column is one of them. They must never change.
//
//	type          canonical plaintext (UTF-8)                     examples
//	text          the string as sent                              山田太郎
//	varchar(n)    the string, at most n characters                abc
//	bpchar(n)     the string blank-padded to n characters         "ab  " for char(4)
//	bpchar        the string as sent (no modifier: no padding)
//	int2/4/8      decimal, no '+', no leading zeros               -7, 0
//	numeric       numeric_out: scale as written (or as the        1.50, -0.001, 1500 (for 1.5e3),
//	              modifier rounds it), no exponent                NaN, Infinity, -Infinity
//	float8        shortest text that reads back as the same       0.1, 1e+100, 5e-324, -0, NaN,
//	              double, as PostgreSQL 12+ prints it             Infinity, -Infinity
//	bool          t or f                                          t
//	date          ISO YYYY-MM-DD (4+ digit year), BC suffix       2024-03-15, 0044-03-15 BC, infinity
//	timestamp     ISO, fraction without trailing zeros            2024-03-15 13:04:05.25
//	timestamptz   ISO in UTC, always "+00"                        2024-03-15 04:04:05.25+00, -infinity
//	uuid          lower-case, hyphenated                          a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
//	jsonb         jsonb's own text output: keys sorted by length  {"a": 1, "bb": [1, 2.50]}
//	              then bytes, duplicate keys → last one wins,
//	              numbers as numeric_out, ", " and ": " spacing
//	bytea         the raw bytes (no hex, no escapes)
//
// In short: the canonical form is PostgreSQL 15's own text output for the
// value in the default session (DateStyle ISO, TimeZone UTC,
// extra_float_digits 1), except bytea (raw bytes). jsonb is fully
// normalized the way jsonb stores it, so `{"b":1,"a":2}` and `{"a": 2, "b":
// 1}` are the same plaintext.
//
// # Input
//
// Canonical validates a value exactly as PostgreSQL does when a Bind
// parameter is stored into a column of the logical type: the type's input
// (text) or receive (binary) function, then the column's modifier with
// assignment rules. The code is a port of PostgreSQL 15's functions (named
// in each function's comment): int2/4/8 pg_strtoint, numeric_in and
// numeric_recv, float8in on glibc's strtod (hex floats, "inf", "nan(…)"),
// boolin, string_to_uuid, byteain, the JSON parser and jsonb's
// normalization, and for dates and times ParseDateTime/DecodeDateTime with
// DateStyle field order, two-digit years, BC, Julian days, ISO 8601 labels
// and "T", AM/PM, zone offsets, timezone_abbreviations (Default set), IANA
// zone names and POSIX zones, with DetermineTimeZoneOffset's rules for
// nonexistent and ambiguous local times. Text input must be valid UTF-8
// without NUL, as pg_client_to_server requires. A value PostgreSQL would
// reject is rejected with PostgreSQL's SQLSTATE, message, detail and hint
// (*ValueError); the tests compare thousands of inputs, including the fuzz
// corpus, with a real PostgreSQL.
//
// pgcloak refuses, with SQLSTATE 0A000, a few inputs PostgreSQL accepts but
// whose meaning pgcloak cannot fix at the proxy:
//   - 'now', 'today', 'tomorrow', 'yesterday': the server's clock (and
//     transaction start) decides them;
//   - for timestamptz only: dynamic zone abbreviations (MSK, and others of
//     the Default set whose offset depends on the zone's history) and POSIX
//     zones with daylight-saving rules ("XXX5YYY");
//   - a TimeZone setting that LoadTimeZone cannot load: timestamptz values
//     without an explicit offset, and all timestamptz output, fail until a
//     loadable zone is set;
//   - client encodings pgcloak does not convert (SJIS, BIG5, GBK, UHC,
//     GB18030, JOHAB: see charset.go), for values that are not plain ASCII;
//     and in EUC_JP the 106 IBM-extension characters at 0x8F 0xF3F3–0xF4FE
//     (0A000).
//
// Deliberate differences from PostgreSQL 15: a timestamp(p)/timestamptz(p)
// value that rounds to 294277-01-01 00:00:00 is refused as out of range
// (PostgreSQL stores it and then cannot read it back); jsonb nested deeper
// than 10000 levels is refused with PostgreSQL's stack-depth error
// (PostgreSQL's own limit is its stack, somewhat deeper); a NaN float8
// keeps neither sign nor payload (PostgreSQL's binary output of '-nan' has
// the sign bit set; ours is the plain NaN); and integer literals use
// PostgreSQL 15 syntax (PostgreSQL 16's 0x1F and 1_000 are invalid input).
//
// # Output
//
// Encode writes what PostgreSQL would send the session: text in the
// session's DateStyle (ISO, SQL, Postgres, German; MDY/DMY), TimeZone
// (offsets as EncodeTimezone prints them: +09, +05:30, -04:56:02 for local
// mean time), bytea_output (hex, escape) and extra_float_digits (> 0
// shortest, <= 0 %.Ng); binary as the type's send function writes it
// (numeric: base-10000 digits, stripped, with the display scale; date: days
// and timestamps: microseconds since 2000-01-01; jsonb: version 1 and the
// text). The relay keeps a Session per connection with Session.Set:
// DateStyle, TimeZone and client_encoding arrive in ParameterStatus;
// bytea_output and extra_float_digits are not reported by the server, so
// the relay takes them from the startup packet and from SET/RESET it sees.
//
// # Lifetimes, allocation, concurrency
//
// Canonical and Encode append to dst and never retain their input; on
// error dst comes back with its original length; on success the result is
// never nil, since a nil value means NULL in pgproto3 (NULL itself never
// reaches this package: it is not encrypted). For the text format of text,
// varchar, bpchar, int2/4/8, numeric, bool, uuid, jsonb, float8 and (in ISO
// DateStyle) date and timestamp, the canonical form is the wire form and
// Encode is one append. Encode allocates nothing on any path except errors;
// Canonical allocates only for jsonb (the tree to sort keys), for zone names
// in date/time input and for float8 values of magnitude 2^52 or more with an
// even mantissa (an exact check with math/big). Types are immutable and
// shared. Canonical and Encode only read their Session; see Session for how
// the relay updates one that two goroutines use.
//
// pgx's pgtype codecs are used as an independent check in the tests
// rather than in the hot path: they allocate per value, and their numeric
// binary form differs from PostgreSQL's (zero digits are not stripped, so
// 10000 is sent as two digits; binary 0.00 decodes as 0, losing the scale).
package values
