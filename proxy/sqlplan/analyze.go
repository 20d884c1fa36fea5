package sqlplan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Analyze plans sql: which literals and parameters carry values of protected
// columns, and which session state the statements change. searchPath is the
// session's current search_path, used to resolve unqualified table names.
//
// It returns (nil, nil) when the text needs nothing from pgcloak: it names no
// protected table and changes no tracked state, or it does not parse and
// names no protected table (the server reports its own syntax error). The
// error, when not nil, is a *Refusal: the text must not be forwarded.
// Otherwise the Analysis has one Statement per statement of the text;
// statements that touch no protected column have empty plans.
//
// The Analysis keeps no reference to sql (what it holds of the text is
// copied), so sql may alias a buffer that is reused afterwards.
//
// Analyze is safe for concurrent use if cat is.
func Analyze(sql string, cat Catalog, settings *Settings) (an *Analysis, err error) {
	names := cat.ProtectedNames()
	if !mayMatter(sql, names) {
		return nil, nil
	}
	defer func() {
		// A bug here must not take the session down, nor let the text
		// through: refuse it.
		if p := recover(); p != nil {
			an, err = nil, &Refusal{Code: CodeInternalError, Op: "analyze", Reason: fmt.Sprintf("internal error in the SQL analyzer: %v", p)}
		}
	}()
	return analyze(sql, cat, names, settings)
}

// analyze is Analyze after the cheap filter, without the recover (so tests
// and the fuzzer see panics).
func analyze(sql string, cat Catalog, names []string, settings *Settings) (*Analysis, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		// The C parser would stop at the NUL and plan only what precedes it.
		return nil, refuse("parse", "", "the statement text contains a NUL byte")
	}
	if len(sql) >= elideText {
		if an, ok := analyzeElided(sql, cat, names, settings); ok {
			return an, nil
		}
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		if name := mentioned(sql, names); name != "" {
			return nil, &Refusal{Code: CodeSyntaxError, Op: "parse a statement on", Column: name, Reason: err.Error()}
		}
		return nil, nil
	}
	return analyzeTree(sql, tree, cat, names, settings)
}

// analyzeTree is analyze with the text parsed.
func analyzeTree(sql string, tree *pg.ParseResult, cat Catalog, names []string, settings *Settings) (*Analysis, error) {
	if settings == nil {
		settings = NewSettings(nil)
	}
	a := &analyzer{sql: sql, cat: cat, names: names, settings: settings}
	out := &Analysis{Statements: make([]Statement, len(tree.Stmts))}
	for i, raw := range tree.Stmts {
		st := &out.Statements[i]
		if err := a.statement(st, raw); err != nil {
			return nil, err
		}
		if len(st.Effects) > 0 {
			// The statements after it run with its effects: plan them so
			// (on a copy: the session applies them once they ran).
			if !a.cloned {
				a.settings, a.cloned = a.settings.Clone(), true
			}
			a.settings.Apply(st.Effects)
			a.pathCached = false
		}
	}
	return out, nil
}

// analyzer holds the state of one Analyze call.
type analyzer struct {
	sql   string
	cat   Catalog
	names []string // cat.ProtectedNames()

	// settings are the session settings in force for the statement being
	// planned: a SET earlier in the same text changes them (cloned: the
	// caller's are not changed).
	settings *Settings
	cloned   bool
	// path is settings' search_path, parsed once (pathOK: it is known).
	path       []string
	pathOK     bool
	pathCached bool
	// once holds the function calls that run exactly once (the targets
	// of a SELECT without FROM or WHERE), so set_config there is an Effect
	// rather than a maybe.
	once map[*pg.FuncCall]bool

	toks    []*pg.ScanToken // the text's tokens without comments, scanned on first need
	scanned bool

	// Per statement (the inner one for PREPARE).
	st      *Statement
	params  map[int]*param
	touched []string           // protected tables the statement reads or writes, "schema.table"
	subj    map[int]SubjectRef // the row's subject of $n stored into subject-keyed columns
}

// param records how one $n is used.
type param struct {
	col   *Column // the protected column it carries
	other *Column // a second, different protected column it is also bound to
	plain bool    // also used where it is not encrypted
}

// statement plans one parsed statement into st.
func (a *analyzer) statement(st *Statement, raw *pg.RawStmt) error {
	a.begin(st)
	if err := a.dispatch(st, raw.Stmt, raw); err != nil {
		return err
	}
	return a.finish()
}

func (a *analyzer) begin(st *Statement) {
	a.st, a.params, a.touched = st, nil, nil
}

// dispatch plans one statement node by its command.
func (a *analyzer) dispatch(st *Statement, n *pg.Node, raw *pg.RawStmt) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		st.Kind = "SELECT"
		sel := v.SelectStmt
		if len(sel.FromClause) == 0 && sel.WhereClause == nil && sel.Op == pg.SetOperation_SETOP_NONE &&
			len(sel.ValuesLists) == 0 && sel.HavingClause == nil && len(sel.GroupClause) == 0 {
			// A function that is a target of its own runs exactly once
			// (not one inside CASE, COALESCE …).
			for _, t := range sel.TargetList {
				if fc := t.GetResTarget().GetVal().GetFuncCall(); fc != nil {
					if a.once == nil {
						a.once = map[*pg.FuncCall]bool{}
					}
					a.once[fc] = true
				}
			}
			defer func() { a.once = nil }()
		}
		rule := keep
		if v.SelectStmt.IntoClause != nil {
			rule = noneRule("copy", "SELECT INTO would store its ciphertext in a new table, where it does not decrypt")
		}
		out, err := a.selectStmt(v.SelectStmt, nil, rule, nil)
		if err == nil && v.SelectStmt.IntoClause == nil {
			st.Results = resultColumns(v.SelectStmt, out)
		}
		a.reads(out)
		return err
	case *pg.Node_InsertStmt:
		st.Kind = "INSERT"
		out, err := a.insert(v.InsertStmt, nil, keep)
		a.reads(out)
		return err
	case *pg.Node_UpdateStmt:
		st.Kind = "UPDATE"
		out, err := a.update(v.UpdateStmt, nil, keep)
		a.reads(out)
		return err
	case *pg.Node_DeleteStmt:
		st.Kind = "DELETE"
		out, err := a.delete(v.DeleteStmt, nil, keep)
		a.reads(out)
		return err
	case *pg.Node_MergeStmt:
		st.Kind = "MERGE"
		out, err := a.merge(v.MergeStmt, nil)
		a.reads(out)
		return err
	case *pg.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs the statement: plan it like the statement.
		err := a.dispatch(st, v.ExplainStmt.Query, raw)
		st.Kind, st.Results, st.Reads = "EXPLAIN", nil, nil // its rows are the plan's text
		return err
	case *pg.Node_DeclareCursorStmt:
		st.Kind = "DECLARE"
		out, err := a.query(v.DeclareCursorStmt.Query, nil, keep, nil)
		a.reads(out)
		return err
	case *pg.Node_PrepareStmt:
		return a.prepare(st, v.PrepareStmt, raw)
	case *pg.Node_ExecuteStmt:
		st.Kind = "EXECUTE"
		return a.execute(st, v.ExecuteStmt)
	case *pg.Node_DeallocateStmt:
		st.Kind = "DEALLOCATE"
		if v.DeallocateStmt.Isall {
			st.Effects = append(st.Effects, Effect{Kind: EffectDeallocateAll})
		} else {
			st.Effects = append(st.Effects, Effect{Kind: EffectDeallocate, Name: v.DeallocateStmt.Name})
		}
		return nil
	case *pg.Node_TransactionStmt:
		st.Kind = "TRANSACTION"
		a.transaction(st, v.TransactionStmt)
		return nil
	case *pg.Node_VariableSetStmt:
		st.Kind = "SET"
		return a.set(st, v.VariableSetStmt)
	case *pg.Node_DiscardStmt:
		st.Kind = "DISCARD"
		if v.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL {
			// DISCARD ALL = DEALLOCATE ALL + RESET ALL + …
			st.Effects = append(st.Effects, Effect{Kind: EffectDeallocateAll}, Effect{Kind: EffectResetAll})
		}
		return nil
	case *pg.Node_CopyStmt:
		st.Kind = "COPY"
		return a.copy(st, v.CopyStmt)
	case *pg.Node_ViewStmt:
		st.Kind = "CREATE VIEW"
		return a.view(v.ViewStmt.Query, false)
	case *pg.Node_CreateTableAsStmt:
		st.Kind = "CREATE TABLE AS"
		return a.createTableAs(st, v.CreateTableAsStmt, raw)
	case *pg.Node_DoStmt, *pg.Node_CreateFunctionStmt, *pg.Node_RuleStmt:
		st.Kind = "OTHER"
		return a.serverCode(raw)
	case *pg.Node_AlterTableStmt:
		st.Kind = "OTHER"
		return a.alterTable(st, v.AlterTableStmt, raw)
	case *pg.Node_CreateStmt:
		st.Kind = "CREATE TABLE"
		return a.createTable(st, v.CreateStmt, raw)
	case *pg.Node_RenameStmt:
		st.Kind = "OTHER"
		return a.rename(v.RenameStmt)
	case *pg.Node_AlterObjectSchemaStmt:
		st.Kind = "OTHER"
		return a.alterSchema(v.AlterObjectSchemaStmt)
	case *pg.Node_DropStmt:
		st.Kind = "OTHER"
		return a.drop(v.DropStmt)
	}
	st.Kind = "OTHER"
	return nil
}

// finish applies the parameter rules and puts the statement's plan in order.
func (a *analyzer) finish() error {
	st := a.st
	nums := make([]int, 0, len(a.params))
	for n := range a.params {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		p := a.params[n]
		if p.col == nil {
			continue
		}
		op := "bind $" + strconv.Itoa(n) + " to"
		if p.other != nil {
			return refuse(op, p.col.String(), "the same parameter also goes to "+p.other.String()+", and a ciphertext is bound to one column; pass the value twice")
		}
		if p.plain {
			return refuse(op, p.col.String(), "the same parameter is also used where it is not encrypted; pass the value twice")
		}
		if st.Params == nil {
			st.Params = make(map[int]*Column)
		}
		st.Params[n] = p.col
	}
	sort.Slice(st.Edits, func(i, j int) bool { return st.Edits[i].Start < st.Edits[j].Start })
	// One literal can be reached twice (x IN (…) planned per element);
	// the same edit twice is one edit, two different ones are a conflict.
	edits := st.Edits[:0]
	for _, e := range st.Edits {
		if k := len(edits) - 1; k >= 0 && e.Start < edits[k].End {
			if e.Start == edits[k].Start && e.End == edits[k].End && same(e.Column, edits[k].Column) {
				continue
			}
			return refuse("encrypt", e.Column.String(), "the same literal also goes to "+edits[k].Column.String()+"; write it twice")
		}
		edits = append(edits, e)
	}
	st.Edits = edits
	return a.finishSubjects()
}

// usePlain records $n where its value is used as is (not encrypted).
func (a *analyzer) usePlain(n int) {
	a.param(n).plain = true
}

// bindParam records $n as carrying col's plaintext.
func (a *analyzer) bindParam(n int, col *Column) {
	p := a.param(n)
	switch {
	case p.col == nil:
		p.col = col
	case !same(p.col, col) && p.other == nil:
		p.other = col
	}
}

func (a *analyzer) param(n int) *param {
	if a.params == nil {
		a.params = make(map[int]*param)
	}
	p := a.params[n]
	if p == nil {
		p = &param{}
		a.params[n] = p
	}
	return p
}

// join records a comparison between two distinct deterministic columns.
func (a *analyzer) join(x, y *Column) {
	for _, j := range a.st.Joins {
		if (same(j[0], x) && same(j[1], y)) || (same(j[0], y) && same(j[1], x)) {
			return
		}
	}
	a.st.Joins = append(a.st.Joins, [2]*Column{x, y})
}

// reads records the protected columns among a statement's outputs.
func (a *analyzer) reads(out *outputs) {
	if out == nil {
		return
	}
	for _, o := range out.list {
		if o.col != nil {
			a.st.Reads = addColumn(a.st.Reads, o.col)
		}
	}
}

// wrote records that the statement stores into col.
func (a *analyzer) wrote(col *Column) { a.st.Writes = addColumn(a.st.Writes, col) }

// compared records that the statement compares or groups col.
func (a *analyzer) compared(col *Column) { a.st.Compares = addColumn(a.st.Compares, col) }

// addColumn appends col to list unless it is there.
func addColumn(list []*Column, col *Column) []*Column {
	for _, c := range list {
		if same(c, col) {
			return list
		}
	}
	return append(list, col)
}

// touch records that the statement uses protected table t.
func (a *analyzer) touch(t string) { a.touched = append(a.touched, t) }

// searchPath returns the search_path in force, and whether it is known.
func (a *analyzer) searchPath() ([]string, bool) {
	if !a.pathCached {
		a.path, a.pathOK = a.settings.Path()
		a.pathCached = true
	}
	return a.path, a.pathOK
}

// text returns the source text of a raw statement.
func (a *analyzer) text(raw *pg.RawStmt) string {
	start := int(raw.StmtLocation)
	if start < 0 || start > len(a.sql) {
		return a.sql
	}
	end := len(a.sql)
	if raw.StmtLen > 0 && start+int(raw.StmtLen) <= end {
		end = start + int(raw.StmtLen)
	}
	return a.sql[start:end]
}
