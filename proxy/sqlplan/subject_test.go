package sqlplan

import (
	"strings"
	"testing"
)

// subjectCatalog is the fake catalog plus two tables with subjects:
//
//	public.members   id (subject), email*, phone*, note, updated_at
//	public.visits    id, member_id (subject), place*
func subjectCatalog() *fakeCatalog {
	c := newFakeCatalog()
	c.add("public", "members", []string{"id", "email", "phone", "note", "updated_at"}, "email", "phone")
	c.add("public", "visits", []string{"id", "member_id", "place"}, "place")
	for _, col := range c.tables["public.members"] {
		col.Subject = "id"
	}
	c.tables["public.visits"]["place"].Subject = "member_id"
	return c
}

func analyzeSubjects(t *testing.T, sql string) (*Analysis, error) {
	t.Helper()
	cat := subjectCatalog()
	return analyze(sql, cat, cat.ProtectedNames(), defaultPath)
}

func TestSubjectInsert(t *testing.T) {
	// Literals: each edit carries its own row's subject.
	a, err := analyzeSubjects(t, `INSERT INTO members (id, email, note) VALUES (42, 'a@x', 'n'), ('0043', 'b@x', NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Statements[0]
	if len(st.Edits) != 2 || st.Edits[0].Subject == nil || st.Edits[0].Subject.Value != "42" || st.Edits[1].Subject.Value != "0043" {
		t.Fatalf("edits %+v", st.Edits)
	}
	// Parameters: the subject is a parameter or a literal of the same row.
	a, err = analyzeSubjects(t, `INSERT INTO members (email, id, phone) VALUES ($1, $2, $3), ($4, 7, NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	ps := a.Statements[0].ParamSubjects
	if ps[1] != (SubjectRef{Param: 2}) || ps[3] != (SubjectRef{Param: 2}) || ps[4] != (SubjectRef{Value: "7"}) || len(ps) != 3 {
		t.Fatalf("param subjects %+v", ps)
	}
	// Without a column list, the table's column order.
	a, err = analyzeSubjects(t, `INSERT INTO visits VALUES (1, $1, $2)`)
	if err != nil || a.Statements[0].ParamSubjects[2] != (SubjectRef{Param: 1}) {
		t.Fatalf("visits: %v %+v", err, a)
	}
	// ON CONFLICT on the subject: the SET values take the row's subject.
	a, err = analyzeSubjects(t, `INSERT INTO members (id, email) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, phone = $3`)
	if err != nil || a.Statements[0].ParamSubjects[3] != (SubjectRef{Param: 1}) {
		t.Fatalf("on conflict: %v %+v", err, a)
	}
	// Rows without protected values need no subject.
	if _, err := analyzeSubjects(t, `INSERT INTO members (note) VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	// PREPARE … EXECUTE: the subject is the other argument.
	a, err = analyzeSubjects(t, `PREPARE p AS INSERT INTO members (id, email) VALUES ($1, $2)`)
	if err != nil || a.Statements[0].Effects[0].Statement.ParamSubjects[2] != (SubjectRef{Param: 1}) {
		t.Fatalf("prepare: %v %+v", err, a)
	}
}

func TestSubjectUpdate(t *testing.T) {
	a, err := analyzeSubjects(t, `UPDATE members SET email = $1, note = 'x' WHERE id = $2`)
	if err != nil || a.Statements[0].ParamSubjects[1] != (SubjectRef{Param: 2}) {
		t.Fatalf("%v %+v", err, a)
	}
	a, err = analyzeSubjects(t, `UPDATE members m SET phone = '555' WHERE updated_at < now() AND 42 = m.id`)
	if err != nil || a.Statements[0].Edits[0].Subject == nil || a.Statements[0].Edits[0].Subject.Value != "42" {
		t.Fatalf("%v %+v", err, a)
	}
	a, err = analyzeSubjects(t, `UPDATE visits SET place = $1 WHERE member_id = '9'`)
	if err != nil || a.Statements[0].ParamSubjects[1] != (SubjectRef{Value: "9"}) {
		t.Fatalf("%v %+v", err, a)
	}
	// The row's own ciphertext needs no subject; NULL neither.
	for _, sql := range []string{`UPDATE members SET email = email, phone = NULL`, `UPDATE members SET note = 'x'`, `DELETE FROM members WHERE id = 1`} {
		if _, err := analyzeSubjects(t, sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

func TestSubjectRefusals(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{`INSERT INTO members (email) VALUES ('a@x')`, "the INSERT does not name id"},
		{`INSERT INTO members (id, email) VALUES (DEFAULT, 'a@x')`, "is DEFAULT, not known before the row is inserted"},
		{`INSERT INTO members (id, email) VALUES (nextval('s'), 'a@x')`, "computed by the server (function nextval())"},
		{`INSERT INTO members (id, email) VALUES (NULL, 'a@x')`, "is NULL"},
		{`INSERT INTO members (id, email) VALUES ($1, 'a@x')`, "pass the value as a parameter too"},
		{`INSERT INTO members (id, email) SELECT 1, 'a@x'`, "INSERT … SELECT computes the row's subject on the server"},
		{`INSERT INTO members (id, email) VALUES (1, $1), (2, $1)`, "goes to rows of different subjects"},
		{`UPDATE members SET email = $1`, "does not pin the row's subject"},
		{`UPDATE members SET email = $1 WHERE id = $2 OR id = $3`, "does not pin the row's subject"},
		{`UPDATE members SET email = $1 WHERE id > $2`, "does not pin the row's subject"},
		{`UPDATE members SET id = $1 WHERE id = $2`, "cannot change the subject of public.members"},
		{`UPDATE members SET email = o.email FROM members o WHERE members.id = 1 AND o.id = 2`, "another row's ciphertext"},
		{`INSERT INTO members (id, email) VALUES ($1, $2) ON CONFLICT (email) DO UPDATE SET email = $2`, "name the subject column alone as the conflict target"},
		{`INSERT INTO members (id, email) VALUES (1, $1), (2, $2) ON CONFLICT (id) DO UPDATE SET phone = $3`, "ON CONFLICT DO UPDATE with several rows"},
		{`INSERT INTO members (id, email) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET id = 5, phone = $3`, "cannot set the subject column"},
		{`WITH x AS (UPDATE members SET email = $1 RETURNING id) SELECT * FROM x`, "does not pin the row's subject"},
	} {
		_, err := analyzeSubjects(t, tc.sql)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %v\n  want it to contain %q", tc.sql, err, tc.want)
		}
	}
}
