package sqlplan

// Mode is how a protected column is encrypted; it decides what SQL can do
// with the column.
type Mode uint8

const (
	// Randomized columns (AES-GCM, a fresh nonce per value) can be stored,
	// read and tested for NULL. Equal plaintexts have different ciphertexts,
	// so no comparison, grouping or ordering works on them.
	Randomized Mode = iota
	// Deterministic columns (AES-SIV) encrypt equal plaintexts of the same
	// column to equal ciphertexts, so equality, IN, GROUP BY, DISTINCT and
	// equi-joins work. Order does not survive encryption.
	Deterministic
)

func (m Mode) String() string {
	if m == Deterministic {
		return "deterministic"
	}
	return "randomized"
}

// Column identifies a protected column. The Catalog owns Column values and
// hands out the same pointer for the same column, so callers may key their own
// per-column data (type, keyring) by *Column.
type Column struct {
	Schema, Table, Name string
	Mode                Mode
	// Backstop is the name of the CHECK constraint that makes PostgreSQL
	// refuse anything but ciphertext in the column.
	Backstop string
}

// String returns "schema.table.column".
func (c *Column) String() string { return c.Schema + "." + c.Table + "." + c.Name }

// same reports whether a and b are the same column. Ciphertext is bound to
// its column (the associated data is schema.table.column), so this is the
// test for "may this ciphertext go there".
func same(a, b *Column) bool {
	return a == b || (a != nil && b != nil && a.Schema == b.Schema && a.Table == b.Table && a.Name == b.Name)
}

// Catalog is what pgcloak knows about the database. The session implements it
// from the configuration checked against the live catalog. Analyze calls it
// from the session's goroutine only; ProtectedNames is called on every
// Analyze, so it should return a slice it keeps, not build one.
type Catalog interface {
	// Protected returns the protected columns of schema.table by column name
	// (exact, case-sensitive as stored in pg_attribute), or nil if none.
	Protected(schema, table string) map[string]*Column
	// Columns returns every column name of schema.table in attnum order,
	// dropped columns left out, or nil if unknown. INSERT without a column
	// list into a protected table needs it.
	Columns(schema, table string) []string
	// Resolve returns the schema an unqualified relation name refers to under
	// searchPath, following PostgreSQL (pg_temp first when present, then
	// pg_catalog unless listed, then the path; "$user" expands to the session
	// user). ok is false when no schema on the path holds such a relation.
	Resolve(name string, searchPath []string) (schema string, ok bool)
	// ProtectedNames lists the relation names (without schema) of all tables
	// with protected columns. A statement whose text mentions none of them
	// is not parsed at all.
	ProtectedNames() []string
	// Ambiguous reports whether several schemas hold a relation called
	// name, so that an unqualified reference depends on the search_path.
	Ambiguous(name string) bool
	// Unavailable returns why statements must not use schema.table now, or
	// "": its protected columns no longer match the database (a column
	// renamed, retyped or dropped around pgcloak, a missing backstop, a view
	// whose columns cannot be attributed). Such statements are refused with
	// SQLSTATE 55000 rather than planned against a stale picture.
	Unavailable(schema, table string) string
}

// Analysis is the plan for one SQL text (a simple Query may hold several
// statements; a Parse message holds one). Analyze returns a nil *Analysis
// when there is nothing to do: forward the text unchanged.
type Analysis struct {
	// Statements holds one entry per statement of the text, in order.
	// Process them in order: a PREPARE may be EXECUTEd later in the same text.
	Statements []Statement
}

// Statement is the plan for one statement.
type Statement struct {
	// Kind is the statement's command: SELECT, INSERT, UPDATE, DELETE,
	// MERGE, EXPLAIN, DECLARE, PREPARE, EXECUTE, DEALLOCATE, SET (also
	// RESET), DISCARD, COPY, CREATE VIEW, CREATE MATERIALIZED VIEW,
	// CREATE TABLE AS, or OTHER.
	Kind string

	// Edits are the literals to encrypt, sorted by Start, with byte offsets
	// into the whole SQL text given to Analyze.
	Edits []Edit
	// Params maps $n (1-based) to the protected column whose plaintext the
	// parameter carries; the session encrypts those Bind values. Nil when no
	// parameter is protected.
	Params map[int]*Column
	// Joins lists pairs of distinct deterministic columns that the statement
	// compares with each other (JOIN … ON a.x = b.y, USING, WHERE, IN). They
	// compare correctly only if both columns share a key: the session must
	// refuse the statement unless each pair is in the same search_group.
	Joins [][2]*Column

	// Effects are the changes of session state the statement makes when it
	// runs: tracked settings (SET, RESET, set_config), transaction levels
	// (BEGIN, COMMIT, savepoints), prepared statements (PREPARE,
	// DEALLOCATE, DISCARD ALL). The session applies them once the server
	// says the statement ran; Analyze already plans the rest of the text
	// with them.
	Effects []Effect

	// Execute is set for EXECUTE name(args), also under EXPLAIN and
	// CREATE TABLE AS.
	Execute *Execute
	// Results is set for a plain SELECT whose output columns are known
	// before PostgreSQL describes them: one entry per output column, the
	// protected column it returns or nil. It is a hint (pgcloak asks for
	// protected results in binary); RowDescription stays the authority.
	Results []*Column

	// Copy is set for COPY of a protected table FROM STDIN or TO STDOUT,
	// and for COPY (query) TO STDOUT with protected output columns: the
	// session rewrites the data stream.
	Copy *Copy
}

// Copy describes COPY table [(columns)] FROM STDIN | TO STDOUT [options] on
// a table with protected columns, or COPY (query) TO STDOUT [options] whose
// output holds protected columns.
type Copy struct {
	// Schema and Table name the table: for COPY (query), the table of the
	// first protected output column (for messages; the rows may come from
	// several tables).
	Schema, Table string
	From          bool
	// Query marks COPY (query) TO: Columns are the query's output names
	// (as far as pgcloak can tell; only their number and the Protected
	// entries matter for the data) and Protected[i] is the column whose
	// ciphertext the i-th output carries.
	Query bool
	// Columns are the COPY's columns in order; Protected[i] is the
	// protected column behind Columns[i], or nil.
	Columns   []string
	Protected []*Column
	Options   []CopyOption
}

// CopyOption is one option of the COPY statement as parsed.
type CopyOption struct {
	Name  string
	Kind  CopyArgKind
	Value string
	List  []string
}

// CopyArgKind is the kind of a COPY option's argument.
type CopyArgKind uint8

const (
	CopyArgNone CopyArgKind = iota
	CopyArgString
	CopyArgNumber
	CopyArgList
	CopyArgStar
)

// Edit is a literal that must be replaced by its ciphertext.
type Edit struct {
	// Start and End delimit the literal in the SQL text: sql[Start:End].
	// The range covers the whole literal expression, including a sign, a
	// cast ('x'::text, CAST('x' AS text), DATE '2024-01-01') and parentheses
	// inside the cast, so that replacing it with '\x…'::bytea leaves valid
	// SQL of the right type. A string literal may touch the next token
	// (CASE ssn WHEN'x'THEN …): when SpaceAfter(sql, e) the replacement must
	// be followed by a space, or "bytea" would run into it.
	Start, End int
	// Column is the protected column the value is for.
	Column *Column
	// Value is the literal's value as PostgreSQL reads it: a string constant
	// unescaped (E'', U&'', $$…$$ and adjacent-string forms), a number in
	// PostgreSQL's reading (sign included; integers in decimal), true/false.
	Value string
	// Null marks a NULL literal: nothing is encrypted (NULL stays NULL).
	// Replace the range with NULL: it may carry a cast (NULL::text) that
	// would not match bytea.
	Null bool
	// Backstop marks an insertion (Start == End) into DDL that creates
	// Column through pgcloak: Verbatim (", " or ", ADD "), then the
	// column's backstop constraint clause, so the table never exists
	// without it.
	Backstop bool
	// Verbatim, with Column nil, replaces the range as it is: the schema
	// that qualifies a relation name several schemas hold ("app."; Value is
	// the relation's name), so the server acts on the relation pgcloak
	// planned for, whatever the search_path turns out to be; or "bytea" for
	// the type of a cast around a CASE whose results are encrypted (Value
	// empty).
	Verbatim string
}

// SpaceAfter reports whether the replacement of e in sql must be followed by
// a space: the next byte would otherwise continue its last word.
func SpaceAfter(sql string, e Edit) bool { return e.End < len(sql) && identByte(sql[e.End]) }

// Execute describes EXECUTE name(args). The session matches Args to the
// Params of the statement stored under Name.
type Execute struct {
	Name string
	Args []Arg
}

// Arg is one argument of an EXECUTE.
type Arg struct {
	// Literal is set when the argument is a literal (possibly signed or cast)
	// that can be encrypted in place; Start, End, Value and Null are as in
	// Edit and meaningful only then. Any other argument is computed by the
	// server and cannot go to a protected parameter.
	Literal    bool
	Start, End int
	Value      string
	Null       bool
}
