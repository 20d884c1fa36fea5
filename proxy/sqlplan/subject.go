package sqlplan

import (
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Subject-keyed columns (Column.Subject set) are encrypted under the key of
// the row's subject, so a value written into one needs the subject of its
// row, known before the statement reaches the server:
//
//   - INSERT … VALUES: the subject column's literal or parameter in the same
//     row (it must be in the column list: a DEFAULT or serial subject is
//     not known before the insert);
//   - UPDATE … SET: a top-level WHERE conjunct subject = literal/parameter
//     (every row the UPDATE touches then has that subject); the subject
//     column itself cannot be changed;
//   - INSERT … ON CONFLICT (subject) DO UPDATE: the row's own subject, for a
//     single-row VALUES.
//
// Everything else that would store into a subject-keyed column is refused
// (finishSubjects), never encrypted under another key.

// SubjectRef says where the subject of a value of a subject-keyed column
// comes from.
type SubjectRef struct {
	// Param is the $n that carries the subject, or 0 for a literal.
	Param int
	// Value is the literal subject as PostgreSQL reads it (Param == 0).
	Value string
}

// subjectOf returns the subject column of a rel's subject-keyed columns and
// one of them (for messages), or "".
func subjectOf(r *rel) (string, *Column) {
	for _, c := range r.cols {
		if c.Subject != "" {
			return c.Subject, c
		}
	}
	return "", nil
}

// howToSubject is the advice of refusals for a value whose subject is unknown.
func howToSubject(subj string) string {
	return "pgcloak encrypts it under the key of the row's subject (" + subj + "), which must be known before the statement runs: " +
		"INSERT … VALUES naming " + subj + " as a literal or parameter, or UPDATE … WHERE " + subj + " = $n"
}

// insertSubjects binds the values an INSERT stores into subject-keyed
// columns to the subject of their row.
func (a *analyzer) insertSubjects(ins *pg.InsertStmt, target *rel) error {
	subj, some := subjectOf(target)
	if subj == "" {
		return nil
	}
	var names []string
	if len(ins.Cols) > 0 {
		for _, c := range ins.Cols {
			names = append(names, c.GetResTarget().GetName())
		}
	} else {
		names = target.all
	}
	si, stored := -1, []int(nil)
	for i, n := range names {
		switch {
		case n == subj:
			si = i
		case target.cols[n] != nil && target.cols[n].Subject != "":
			stored = append(stored, i)
		}
	}
	sets := a.subjectSets(ins, target, subj)
	if len(stored) == 0 && len(sets) == 0 {
		return nil
	}
	sel := ins.SelectStmt.GetSelectStmt()
	if sel == nil || len(sel.ValuesLists) == 0 {
		return refuse("store into", some.String(), "INSERT … SELECT computes the row's subject on the server; "+howToSubject(subj))
	}
	if si < 0 {
		return refuse("store into", some.String(), "the INSERT does not name "+subj+" (a DEFAULT or serial subject is not known before the row is inserted); "+
			"pass the subject (e.g. SELECT nextval(…) first), or insert the row without its protected values and set them with UPDATE … WHERE "+subj+" = $n")
	}
	var first SubjectRef
	for r, row := range sel.ValuesLists {
		items := row.GetList().GetItems()
		if si >= len(items) {
			continue // PostgreSQL reports the short row
		}
		ref, err := a.subjectValue(items[si], subj, some)
		if err != nil {
			return err
		}
		if r == 0 {
			first = ref
		}
		for _, i := range stored {
			if i < len(items) {
				if err := a.bindSubject(items[i], target.cols[names[i]], ref); err != nil {
					return err
				}
			}
		}
	}
	if len(sets) > 0 {
		if !conflictOnSubject(ins.OnConflictClause, subj) {
			return refuse("store into", some.String(), "ON CONFLICT DO UPDATE may update a row of another subject than the one proposed; "+
				"name the subject column alone as the conflict target (ON CONFLICT ("+subj+")), or update with UPDATE … WHERE "+subj+" = $n")
		}
		if len(sel.ValuesLists) != 1 {
			return refuse("store into", sets[0].col.String(), "ON CONFLICT DO UPDATE with several rows: pgcloak cannot tell which row's subject a SET value belongs to; insert one row per statement")
		}
		for _, s := range sets {
			if err := a.bindSubject(s.val, s.col, first); err != nil {
				return err
			}
		}
	}
	return nil
}

// subjectSet is one assignment to a subject-keyed column.
type subjectSet struct {
	col *Column
	val *pg.Node
}

// subjectSets returns the assignments of INSERT … ON CONFLICT DO UPDATE to
// subject-keyed columns. They are only planned when the conflict is on the
// subject column alone: the row updated then has the proposed row's subject.
func (a *analyzer) subjectSets(ins *pg.InsertStmt, target *rel, subj string) []subjectSet {
	oc := ins.OnConflictClause
	if oc == nil || oc.Action != pg.OnConflictAction_ONCONFLICT_UPDATE {
		return nil
	}
	var out []subjectSet
	for _, t := range oc.TargetList {
		rt := t.GetResTarget()
		if c := target.cols[rt.GetName()]; c != nil && c.Subject != "" {
			out = append(out, subjectSet{c, assigned(rt)})
		} else if rt.GetName() == subj {
			out = append(out, subjectSet{nil, nil}) // checked by conflictOnSubject
		}
	}
	return out
}

// conflictOnSubject reports whether ON CONFLICT names the subject column
// alone (a unique index on it: the existing row has the proposed subject).
func conflictOnSubject(oc *pg.OnConflictClause, subj string) bool {
	inf := oc.GetInfer()
	if inf == nil || inf.Conname != "" || len(inf.IndexElems) != 1 || inf.WhereClause != nil {
		return false
	}
	ie := inf.IndexElems[0].GetIndexElem()
	return ie != nil && ie.Expr == nil && ie.Name == subj
}

// assigned is the value a SET target assigns: (a, b) = (x, y) gives each
// its element; nil when it comes from a subquery.
func assigned(rt *pg.ResTarget) *pg.Node {
	if mar := rt.Val.GetMultiAssignRef(); mar != nil {
		row := mar.Source.GetRowExpr()
		if row == nil || mar.Colno < 1 || int(mar.Colno) > len(row.Args) {
			return nil
		}
		return row.Args[mar.Colno-1]
	}
	return rt.Val
}

// subjectValue reads a row's subject: a literal or a parameter.
func (a *analyzer) subjectValue(n *pg.Node, subj string, some *Column) (SubjectRef, error) {
	if !isLiteral(n) {
		return SubjectRef{}, refuse("store into", some.String(), "the row's subject ("+subj+") is "+describeSubject(n)+"; "+howToSubject(subj))
	}
	l, why := a.literal(n)
	switch {
	case why != "":
		return SubjectRef{}, refuse("store into", some.String(), why)
	case l.null:
		return SubjectRef{}, refuse("store into", some.String(), "the row's subject ("+subj+") is NULL: a subject-keyed value needs a subject")
	case l.param > 0:
		return SubjectRef{Param: l.param}, nil
	}
	return SubjectRef{Value: l.value}, nil
}

func describeSubject(n *pg.Node) string {
	if n.GetSetToDefault() != nil {
		return "DEFAULT, not known before the row is inserted"
	}
	return "computed by the server (" + describe(n) + ")"
}

// bindSubject records that the value n stored into subject-keyed column col
// belongs to the subject ref: on its Edit for a literal, in a.subj for a
// parameter. DEFAULT, NULL and the column's own ciphertext need nothing.
func (a *analyzer) bindSubject(n *pg.Node, col *Column, ref SubjectRef) error {
	if col == nil {
		return refuse("change the subject of", "a row", "ON CONFLICT DO UPDATE cannot set the subject column: the row's protected values are under its subject's key")
	}
	if n == nil || !isLiteral(n) {
		return nil // DEFAULT, or a reference store() accepted
	}
	l, why := a.literal(n)
	switch {
	case why != "" || l.null:
		return nil // store() refused it already, or NULL stays NULL
	case l.param > 0:
		if old, ok := a.subj[l.param]; ok && old != ref {
			return refuse("bind $"+strconv.Itoa(l.param)+" to", col.String(), "the same parameter goes to rows of different subjects, and each subject has its own key; pass the value once per row")
		}
		if a.subj == nil {
			a.subj = map[int]SubjectRef{}
		}
		a.subj[l.param] = ref
		return nil
	case ref.Param > 0:
		return refuse("store into", col.String(), "the value is a literal and the row's subject a parameter ($"+strconv.Itoa(ref.Param)+
			"): literals are encrypted when the statement is prepared, before the subject is known; pass the value as a parameter too")
	}
	for i := range a.st.Edits {
		if e := &a.st.Edits[i]; e.Start == l.start && e.End == l.end && same(e.Column, col) {
			r := ref
			e.Subject = &r
		}
	}
	return nil
}

// updateSubjects binds the values an UPDATE sets in subject-keyed columns
// to the subject its WHERE clause pins.
func (a *analyzer) updateSubjects(u *pg.UpdateStmt, target *rel) error {
	subj, _ := subjectOf(target)
	if subj == "" {
		return nil
	}
	var sets []subjectSet
	for _, t := range u.TargetList {
		rt := t.GetResTarget()
		if rt.GetName() == subj {
			return refuse("change the subject of", target.what(), "the protected values of its rows are encrypted under the key of their subject ("+subj+"); "+
				"insert the row under the new subject (with its values) and delete the old one")
		}
		if c := target.cols[rt.GetName()]; c != nil && c.Subject != "" {
			sets = append(sets, subjectSet{c, assigned(rt)})
		}
	}
	if len(sets) == 0 {
		return nil
	}
	ref, ok := a.pinnedSubject(u.WhereClause, target, subj)
	for _, s := range sets {
		if cr := s.val.GetColumnRef(); cr != nil {
			if names, _ := fields(cr); len(names) > 1 && names[len(names)-2] != target.name {
				return refuse("store into", s.col.String(), "the value is another row's ciphertext, under that row's subject's key; read it and write it back as a parameter")
			}
			continue // the row's own value: it stays under its key
		}
		if s.val.GetSetToDefault() != nil || isNull(s.val) {
			continue
		}
		if !ok {
			return refuse("store into", s.col.String(), "the UPDATE does not pin the row's subject; "+howToSubject(subj))
		}
		if err := a.bindSubject(s.val, s.col, ref); err != nil {
			return err
		}
	}
	return nil
}

// isNull reports whether n is the NULL constant (possibly cast).
func isNull(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		return isNull(tc.Arg)
	}
	c := n.GetAConst()
	return c != nil && c.Isnull
}

// pinnedSubject finds subj = literal/parameter (either way round) among the
// top-level AND conjuncts of where, the subject column named plainly or
// qualified with the target's name.
func (a *analyzer) pinnedSubject(where *pg.Node, target *rel, subj string) (SubjectRef, bool) {
	conj := []*pg.Node{where}
	if b := where.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		conj = b.Args
	}
	for _, c := range conj {
		e := c.GetAExpr()
		if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || opName(e.Name) != "=" {
			continue
		}
		for _, side := range [2][2]*pg.Node{{e.Lexpr, e.Rexpr}, {e.Rexpr, e.Lexpr}} {
			cr := side[0].GetColumnRef()
			if cr == nil || !isLiteral(side[1]) {
				continue
			}
			names, star := fields(cr)
			if star || names[len(names)-1] != subj || len(names) > 1 && names[len(names)-2] != target.name {
				continue
			}
			l, why := a.literal(side[1])
			if why != "" || l.null {
				continue
			}
			if l.param > 0 {
				return SubjectRef{Param: l.param}, true
			}
			return SubjectRef{Value: l.value}, true
		}
	}
	return SubjectRef{}, false
}

// finishSubjects refuses a value of a subject-keyed column whose subject is
// not known (a store the rules above do not cover), and records the
// subjects of the statement's parameters.
func (a *analyzer) finishSubjects() error {
	st := a.st
	for _, e := range st.Edits {
		if e.Column != nil && e.Column.Subject != "" && !e.Null && !e.Backstop && e.Subject == nil {
			return refuse("store into", e.Column.String(), howToSubject(e.Column.Subject))
		}
	}
	for n, col := range st.Params {
		if col.Subject == "" {
			continue
		}
		ref, ok := a.subj[n]
		if !ok {
			return refuse("bind $"+strconv.Itoa(n)+" to", col.String(), howToSubject(col.Subject))
		}
		if st.ParamSubjects == nil {
			st.ParamSubjects = map[int]SubjectRef{}
		}
		st.ParamSubjects[n] = ref
	}
	a.subj = nil
	return nil
}
