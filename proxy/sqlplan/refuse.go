package sqlplan

// SQLSTATE codes of refusals (PostgreSQL's own codes for the condition,
// src/backend/utils/errcodes.txt).
const (
	CodeFeatureNotSupported = "0A000" // feature_not_supported: the usual refusal
	CodeSyntaxError         = "42601" // syntax_error: unparseable text naming a protected table
	CodeInternalError       = "XX000" // internal_error: the analyzer itself failed (fail closed)
	CodeNotInPrerequisite   = "55000" // object_not_in_prerequisite_state: the rules do not match the catalog now
	CodeUndefinedColumn     = "42703" // undefined_column: a protected table's column the catalog does not show
)

// Refusal is a statement pgcloak will not forward because it would store
// plaintext in, or compare plaintext against, a protected column, or return a
// wrong answer. The session answers it with an ErrorResponse carrying Code
// and Error() (prefixed "pgcloak: ").
type Refusal struct {
	// Code is the SQLSTATE.
	Code string
	// Op is what cannot be done, phrased to follow "cannot": "store into",
	// "compare", "order by", "copy" … Empty reads as "use".
	Op string
	// Column names what it cannot be done to: "schema.table.column",
	// "schema.table", a bare table name, or "" when nothing more precise is
	// known.
	Column string
	// Reason says why, and where possible what to do instead.
	Reason string
	// Hint, when set, says what to do instead at more length (the
	// ErrorResponse's HINT).
	Hint string
}

// ErrorHint returns the refusal's hint (pgerr.From reads it).
func (r *Refusal) ErrorHint() string { return r.Hint }

// SQLState returns the refusal's SQLSTATE.
func (r *Refusal) SQLState() string { return r.Code }

// Error returns "cannot <op> <column>: <reason>".
func (r *Refusal) Error() string {
	op := r.Op
	if op == "" {
		op = "use"
	}
	if r.Column == "" {
		return "cannot " + op + ": " + r.Reason
	}
	return "cannot " + op + " " + r.Column + ": " + r.Reason
}

// refuse builds the usual refusal (feature_not_supported).
func refuse(op, what, reason string) *Refusal {
	return &Refusal{Code: CodeFeatureNotSupported, Op: op, Column: what, Reason: reason}
}

// Reasons that recur. Each says why encryption rules the operation out.
const (
	whyRandomized  = "randomized encryption gives equal values different ciphertexts, so no comparison works; declare the column mode: deterministic to search it by equality"
	whyNoOrder     = "encrypted values have no order"
	whyOnlyEqual   = "deterministic encryption supports only =, <>, IN, IS [NOT] DISTINCT FROM and IS [NOT] NULL"
	whyComputed    = "pgcloak encrypts only literals and parameters"
	whyLosesColumn = "the result loses the column's identity, so pgcloak could not decrypt it"
	whyGroups      = "randomized encryption gives equal values different ciphertexts, so the groups would be wrong; declare the column mode: deterministic"
)

// Hints for the refusals applications meet most, from ORMs' ordering and
// filtering helpers.
const (
	hintNoOrder = "Order by a column that is not protected, or sort the rows in the application after reading them through pgcloak."
	hintNoMatch = "To look a value up, declare the column mode: deterministic and compare it with = or IN; for a prefix or part search, " +
		"keep the part to search (say, the e-mail's domain) in a deterministic column of its own and compare that with =."
)
