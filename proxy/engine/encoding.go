package engine

import (
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// pgcloak's SQL parser reads UTF-8, as PostgreSQL's does once it has
// converted a query from the client encoding. In a session whose client
// encoding is another one pgcloak converts (proxy/values/charset.go), a text
// with non-ASCII bytes is converted to UTF-8 for the analysis, and the
// analysis is mapped back to the client's text: offsets into the text the
// client sent (which is what goes to the server, with the edits applied),
// literal values in the client encoding (the encryption path reads every
// value from the client encoding).

// utf8Text returns sql as the analyzer reads it, and the offsets that map
// it back (nil when sql needs no conversion).
func utf8Text(sql string, f *values.Session) (string, []int, error) {
	u, offs, err := f.TextToUTF8([]byte(sql))
	if err != nil || u == nil {
		return sql, nil, err
	}
	return string(u), offs, nil
}

// toClientText maps an analysis of the UTF-8 conversion of a text back to
// the text the client sent. offs are utf8Text's offsets.
func toClientText(a *sqlplan.Analysis, offs []int, f *values.Session) (*sqlplan.Analysis, error) {
	if a == nil {
		return nil, nil
	}
	out := &sqlplan.Analysis{Statements: make([]sqlplan.Statement, len(a.Statements))}
	for i, st := range a.Statements {
		var err error
		if st, err = statementToClientText(st, offs, f); err != nil {
			return nil, err
		}
		out.Statements[i] = st
	}
	return out, nil
}

func statementToClientText(st sqlplan.Statement, offs []int, f *values.Session) (sqlplan.Statement, error) {
	// back converts a text read from the UTF-8 conversion to the client
	// encoding; the first error is kept.
	var err error
	back := func(v string) string {
		if err != nil {
			return v
		}
		var b []byte
		b, err = f.TextFromUTF8([]byte(v))
		return string(b)
	}
	edits := make([]sqlplan.Edit, len(st.Edits))
	for i, e := range st.Edits {
		e.Start, e.End = offs[e.Start], offs[e.End]
		if e.Column != nil && !e.Null && !e.Backstop {
			e.Value = back(e.Value)
		}
		edits[i] = e
	}
	st.Edits = edits
	if st.Execute != nil {
		ex := *st.Execute
		ex.Args = make([]sqlplan.Arg, len(st.Execute.Args))
		for i, arg := range st.Execute.Args {
			if arg.Literal {
				arg.Start, arg.End = offs[arg.Start], offs[arg.End]
				if !arg.Null {
					arg.Value = back(arg.Value)
				}
			}
			ex.Args[i] = arg
		}
		st.Execute = &ex
	}
	effects := make([]sqlplan.Effect, len(st.Effects))
	for i, e := range st.Effects {
		if e.Text != "" {
			// The text of a PREPARE: the session plans it again later,
			// from the client's text like any other.
			e.Text = back(e.Text)
		}
		effects[i] = e
	}
	st.Effects = effects
	return st, err
}
