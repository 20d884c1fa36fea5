package engine

// Subject keys: the values of a table with subjects (config subjects:) are
// encrypted under the key of their row's subject, which the write path
// learns from the SQL analysis (sqlplan.SubjectRef: a literal, or another
// parameter of the same Bind) or from the same row of a COPY. Reads find
// the key from the value's header (openValue), whatever the column.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/subject"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// subjectTimeout bounds the database work for one subject key: a read, or
// the insert of a new key.
const subjectTimeout = 5 * time.Second

// subjectValue is the subject of the row a value is written into, as the
// client sent it: a literal's text, or a parameter's bytes in its format
// and declared type. The zero value is "no subject" (a keyring column).
type subjectValue struct {
	set      bool
	null     bool
	text     []byte
	format   int16
	declared uint32
}

// literalSubject is a subject written as a literal in the SQL text.
func literalSubject(ref *sqlplan.SubjectRef) subjectValue {
	if ref == nil {
		return subjectValue{}
	}
	return subjectValue{set: true, text: []byte(ref.Value)}
}

// errForgotten is returned by openValue for a value whose subject was
// forgotten and whose table reads such values as NULL.
var errForgotten = errors.New("forgotten subject")

// seal encrypts the canonical plaintext of a value of col, appending it to
// dst: under col's keyring, or under the key of subj for a subject-keyed
// column (made on the subject's first write).
func (ss *session) seal(dst, plain []byte, col *column, subj *subjectValue) ([]byte, error) {
	if col.rule.Subject == "" {
		out, err := col.keyring.Encrypt(dst, plain, col.id, col.mode)
		if err != nil {
			return nil, keyError(col, err)
		}
		return out, nil
	}
	key, err := ss.subjectKey(col, subj)
	if err != nil {
		return nil, err
	}
	out, err := key.Encrypt(dst, plain, col.id)
	if err != nil {
		return nil, keyError(col, err)
	}
	return out, nil
}

// subjectKey returns the key of the subject subj of a value of col.
func (ss *session) subjectKey(col *column, subj *subjectValue) (*crypto.SubjectKey, error) {
	switch {
	case col.subject == nil:
		return nil, &pgerr.Error{Code: pgerrcode.InternalError, Message: fmt.Sprintf("%s is subject-keyed, and this pgcloak has no subject keys loaded", col)}
	case !subj.set:
		return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("cannot store into %s: pgcloak does not know the row's subject (%s)", col, col.rule.Subject)}
	case subj.null:
		return nil, &pgerr.Error{Code: pgerrcode.NotNullViolation, Message: fmt.Sprintf("cannot store into %s: the row's subject (%s) is NULL, and a subject-keyed value needs a subject", col, col.rule.Subject)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), subjectTimeout)
	defer cancel()
	res, err := col.subject.Resolve(ctx)
	if err != nil {
		return nil, subjectKeyError(col, err)
	}
	text, err := ss.subjectText(res, *subj)
	if err != nil {
		return nil, &pgerr.Error{Code: pgerrcode.InvalidTextRepresentation, Err: err,
			Message: fmt.Sprintf("the subject of %s (%s, %s): %v", col, col.rule.Subject, res.TypeName, err)}
	}
	key, err := col.subject.KeyFor(ctx, text)
	if err != nil {
		return nil, subjectKeyError(col, err)
	}
	return key, nil
}

// subjectText reads a subject in its column's type and returns its
// canonical text, which the key is found by: 42, '042' and an int8 42 in
// binary are the same subject of an integer column.
func (ss *session) subjectText(res *subject.Resolution, subj subjectValue) (string, error) {
	typ, ok := values.ByOID(res.TypeOID)
	if !ok {
		return "", fmt.Errorf("type OID %d is not supported for subjects", res.TypeOID)
	}
	v, format := subj.text, subj.format
	if subj.declared != 0 && subj.declared != res.TypeOID {
		// Declared in another type: read in it, then assign through text.
		dt, ok := values.ByOID(subj.declared)
		if !ok {
			if format != 0 {
				return "", fmt.Errorf("parameter declared with type OID %d, which pgcloak cannot read; declare it as %s or leave it untyped", subj.declared, res.TypeName)
			}
		} else {
			t, err := dt.Canonical(nil, format, v, &ss.cloak.fmtClient)
			if err != nil {
				return "", err
			}
			v, format = t, 0
		}
	}
	canon, err := typ.Canonical(nil, format, v, &ss.cloak.fmtClient)
	if err != nil {
		return "", err
	}
	return string(canon), nil
}

// subjectKeyError is a failure to find or make a subject key: the key
// store cannot be reached, or a catalog mismatch.
func subjectKeyError(col *column, err error) error {
	return &pgerr.Error{Code: pgerrcode.SystemError, Err: err, Message: fmt.Sprintf("cannot get the subject key for %s: %v", col, err)}
}

// paramSubject is the subject of the value of parameter i (0-based) of a
// Bind of st, whose parameters and formats are params and formats.
func paramSubject(st *statement, i int, params [][]byte, formats []int16) subjectValue {
	ref, ok := st.subjects[i+1]
	if !ok {
		return subjectValue{}
	}
	if ref.Param == 0 {
		return literalSubject(&ref)
	}
	k := ref.Param - 1
	if k >= len(params) {
		return subjectValue{set: true, null: true}
	}
	s := subjectValue{set: true, text: params[k], null: params[k] == nil, format: formats[k]}
	if k < len(st.declared) {
		s.declared = st.declared[k]
	}
	return s
}

// executeSubject is the subject of argument n (1-based) of an SQL EXECUTE
// of a statement whose parameter subjects are subjects.
func executeSubject(subjects map[int]sqlplan.SubjectRef, n int, args []sqlplan.Arg) (*sqlplan.SubjectRef, error) {
	ref, ok := subjects[n]
	if !ok || ref.Param == 0 {
		if !ok {
			return nil, nil
		}
		return &ref, nil
	}
	if ref.Param > len(args) || !args[ref.Param-1].Literal || args[ref.Param-1].Null {
		return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
			Message: fmt.Sprintf("EXECUTE argument %d is the row's subject of a protected value; pass it as a non-NULL literal", ref.Param)}
	}
	return &sqlplan.SubjectRef{Value: args[ref.Param-1].Value}, nil
}

// openValue decrypts raw, a stored value of col (pgcloak ciphertext) whose
// header h the caller parsed, with
// the key its header names: a version of col's keyring (looking for new
// versions once if it is not loaded), or a subject key. A value of a
// forgotten subject gives errForgotten, or an error when its table says so.
func (ss *session) openValue(col *column, dst, raw []byte, h crypto.Header) ([]byte, error) {
	if h.Mode == crypto.Subject {
		return ss.openSubject(col, dst, raw)
	}
	plain, err := col.keyring.DecryptParsed(dst, raw, h, col.id)
	if err != nil {
		var uk *crypto.UnknownKeyVersionError
		if errors.As(err, &uk) {
			// Another instance may have rotated: look for new versions once.
			// When that fails the reason (Vault unreachable, say) is what
			// the client and the DBA need to read.
			rerr := ss.rs.prot.Load().reload()
			plain, err = col.keyring.Decrypt(dst, raw, col.id)
			if err != nil && rerr != nil {
				err = fmt.Errorf("%w; loading new key versions failed: %v", err, rerr)
			}
		}
		if err != nil {
			return nil, keyError(col, err)
		}
	}
	return plain, nil
}

// openSubject decrypts a Subject value.
func (ss *session) openSubject(col *column, dst, raw []byte) ([]byte, error) {
	// The server loop reads the newest protection (cloak.p is the client loop's).
	keys := ss.rs.prot.Load().rules.subjects
	h, err := crypto.ParseHeader(raw)
	if err != nil {
		return nil, keyError(col, err)
	}
	if keys == nil {
		return nil, &pgerr.Error{Code: pgerrcode.SystemError, Message: fmt.Sprintf("cannot decrypt %s: the value is under a subject key, and this pgcloak has no subject keys loaded (subjects: in the config)", col)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), subjectTimeout)
	defer cancel()
	key, err := keys.KeyByID(ctx, h.KeyID)
	switch {
	case errors.Is(err, subject.ErrForgotten):
		if col.subject != nil && col.subject.ErrorOnForgotten {
			return nil, &pgerr.Error{Code: pgerrcode.DataException, Err: err,
				Message: fmt.Sprintf("cannot read %s: its subject was forgotten (pgcloak forget), so its value is erased", col)}
		}
		return nil, errForgotten
	case err != nil:
		return nil, &pgerr.Error{Code: pgerrcode.SystemError, Err: err, Message: fmt.Sprintf("cannot decrypt %s: %v", col, err)}
	}
	plain, err := key.Decrypt(dst, raw, col.id)
	if err != nil {
		return nil, keyError(col, err)
	}
	return plain, nil
}

// subjectsOfAnalysis merges the parameter subjects of a text's statements.
func subjectsOfAnalysis(a *sqlplan.Analysis) map[int]sqlplan.SubjectRef {
	var out map[int]sqlplan.SubjectRef
	for i := range a.Statements {
		for n, ref := range a.Statements[i].ParamSubjects {
			if out == nil {
				out = map[int]sqlplan.SubjectRef{}
			}
			out[n] = ref
		}
	}
	return out
}

// copySubject makes a COPY FROM of a table with subjects hand each row's
// subject to the transform of its protected fields. The subject column must
// be in the COPY's column list.
func (st *copyState) copySubject() error {
	var col *column
	for _, c := range st.cols {
		if c != nil && c.rule.Subject != "" {
			col = c
			break
		}
	}
	if col == nil {
		return nil
	}
	for i, name := range st.plan.Columns {
		if name == col.rule.Subject {
			format := valueFormat(st.cfg.Options)
			st.cfg.RowField = i
			st.cfg.Row = func(v []byte, null bool) error {
				st.subj = subjectValue{set: true, null: null, text: append(st.subj.text[:0], v...), format: format}
				return nil
			}
			return nil
		}
	}
	return &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("cannot copy into %s: its protected values are encrypted under the key of the row's subject (%s), and the COPY does not name %s; add it to the column list",
		col.rule.TableString(), col.rule.Subject, col.rule.Subject)}
}
