package sqlplan

import (
	"sort"
	"strings"
)

// Settings are the session settings that pgcloak's analysis and value
// codecs depend on, kept as PostgreSQL keeps them (src/backend/utils/misc/
// guc.c): a SET lasts until the transaction ends and is undone by a
// rollback; SET LOCAL lasts until the transaction ends either way; savepoints
// nest both; RESET returns to the session's starting value.
//
// The session applies to its Settings the Effects of each statement once the
// server confirms it ran (its CommandComplete), the failure of a statement
// (an ErrorResponse aborts the innermost transaction level), and the end of
// an implicit transaction (a Query outside BEGIN, or the messages up to a
// Sync). Analyze applies them to a copy as it plans a multi-statement text,
// so each statement is planned with the settings the server will have when
// it runs it.
//
// Names are lower case. A Settings is not safe for concurrent use.
type Settings struct {
	// User is the session user, which "$user" in search_path names.
	User string

	vars map[string]*guc
	// reset holds the values RESET returns to (the session's start).
	reset map[string]string
	// levels is the transaction nesting: 0 outside a transaction, 1 in a
	// transaction, +1 per savepoint.
	levels int
	// savepoints are the names of the savepoints, outermost first.
	savepoints []string
	// implicit: the transaction was started by a statement, not BEGIN
	// (it ends with the Query or at Sync).
	implicit bool
	// aborted: an error aborted the transaction; it stays open (and
	// refuses everything but ROLLBACK) until the client ends it.
	aborted bool
}

// Tracked settings.
const (
	SearchPath                = "search_path"
	ByteaOutput               = "bytea_output"
	ExtraFloatDigits          = "extra_float_digits"
	DateStyle                 = "datestyle"
	IntervalStyle             = "intervalstyle"
	TimeZone                  = "timezone"
	ClientEncoding            = "client_encoding"
	StandardConformingStrings = "standard_conforming_strings"
)

// trackedSettings are the settings Settings follows; others are ignored.
var trackedSettings = map[string]bool{SearchPath: true, ByteaOutput: true, ExtraFloatDigits: true, DateStyle: true,
	IntervalStyle: true, TimeZone: true, ClientEncoding: true, StandardConformingStrings: true}

// Tracked reports whether name (any case) is a setting Settings follows.
func Tracked(name string) bool { return trackedSettings[strings.ToLower(name)] }

// guc is one setting's value and its stack of saved values per
// transaction level (guc.c's GucStack).
type guc struct {
	val     string
	unknown bool // changed in a way pgcloak could not read
	stack   []gucEntry
}

// gucState is guc.c's GucStackState: what happened at a level.
type gucState uint8

const (
	gucSave     gucState = iota // saved only (the value did not change here)
	gucSet                      // SET at this level
	gucLocal                    // SET LOCAL at this level
	gucSetLocal                 // SET, then SET LOCAL at this level
)

type gucEntry struct {
	level   int
	state   gucState
	prior   gucValue // the value before this level changed it
	masked  gucValue // gucSetLocal: the SET value that the LOCAL masks
	hasMask bool
}

type gucValue struct {
	val     string
	unknown bool
}

// NewSettings returns the settings of a new session: values are the
// session's starting values, which RESET returns to.
func NewSettings(start map[string]string) *Settings {
	s := &Settings{vars: map[string]*guc{}, reset: map[string]string{}}
	for name, v := range start {
		name = strings.ToLower(name)
		if trackedSettings[name] {
			s.reset[name] = v
			s.vars[name] = &guc{val: v}
		}
	}
	return s
}

// Clone returns an independent copy.
func (s *Settings) Clone() *Settings {
	c := &Settings{User: s.User, vars: make(map[string]*guc, len(s.vars)), reset: s.reset, levels: s.levels,
		savepoints: append([]string(nil), s.savepoints...), implicit: s.implicit, aborted: s.aborted}
	for k, g := range s.vars {
		cg := *g
		cg.stack = append([]gucEntry(nil), g.stack...)
		c.vars[k] = &cg
	}
	return c
}

// Get returns the value of a tracked setting; ok is false when it is not
// known (never set and no starting value, or changed in a way pgcloak could
// not read).
func (s *Settings) Get(name string) (value string, ok bool) {
	g := s.vars[name]
	if g == nil || g.unknown {
		return "", false
	}
	return g.val, true
}

// DefaultSearchPath is PostgreSQL's default search_path.
const DefaultSearchPath = `"$user", public`

// Path returns the schemas of search_path in order, "$user" replaced by the
// session user; ok is false when search_path is not known. Without a
// value, it is PostgreSQL's default.
func (s *Settings) Path() (path []string, ok bool) {
	v, ok := s.Get(SearchPath)
	if !ok {
		if g := s.vars[SearchPath]; g != nil && g.unknown {
			return nil, false
		}
		v = DefaultSearchPath
	}
	path, ok = splitIdentifiers(v)
	if !ok {
		return nil, false
	}
	for i, p := range path {
		if p == "$user" {
			path[i] = s.User
		}
	}
	return path, true
}

// Start sets the session's starting value of name: its value now and what
// RESET returns to.
func (s *Settings) Start(name, value string) {
	if !trackedSettings[name] {
		return
	}
	if s.reset == nil {
		s.reset = map[string]string{}
	}
	s.reset[name] = value
	s.vars[name] = &guc{val: value}
}

// Observe records the value the server reports for name (ParameterStatus):
// the server's word replaces what pgcloak derived, at the current level.
func (s *Settings) Observe(name, value string) {
	if !trackedSettings[name] {
		return
	}
	g := s.vars[name]
	if g == nil {
		if s.levels == 0 {
			// Reported before any change: the session's starting value.
			s.Start(name, value)
			return
		}
		g = &guc{val: s.reset[name]}
		s.vars[name] = g
	}
	g.val, g.unknown = value, false
}

// Stacked reports whether some setting was changed in the open transaction
// (so that its end changes values).
func (s *Settings) Stacked() bool {
	for _, g := range s.vars {
		if len(g.stack) > 0 {
			return true
		}
	}
	return false
}

// InTransaction reports whether a transaction is open.
func (s *Settings) InTransaction() bool { return s.levels > 0 }

// Key is a short fingerprint of the values that change analyses (the plan
// cache keys by it).
func (s *Settings) Key() string {
	v, ok := s.Get(SearchPath)
	if !ok {
		return "\x00?"
	}
	return v
}

// String lists the values, for tests and logs.
func (s *Settings) String() string {
	names := make([]string, 0, len(s.vars))
	for n := range s.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		v, ok := s.Get(n)
		if !ok {
			v = "?"
		}
		b.WriteString(n + "=" + v + " ")
	}
	return strings.TrimSpace(b.String())
}

// begin starts a transaction implicitly if none is open (a statement runs
// inside one either way).
func (s *Settings) begin() {
	if s.levels == 0 {
		s.levels, s.implicit, s.aborted = 1, true, false
	}
}

// Effect is one change of session state that a statement makes when it
// runs (Statement.Effects), in the order the server makes them.
type Effect struct {
	Kind EffectKind
	// Name is the setting (lower case), savepoint or prepared statement.
	Name string
	// Value is the new value of a setting (SET, set_config).
	Value string
	// Statement is the plan of the statement PREPARE makes, and Text the
	// PREPARE statement's own text.
	Statement *Statement
	Text      string
}

// EffectKind is what an Effect does.
type EffectKind uint8

const (
	// Setting changes (tracked settings only).
	EffectSet           EffectKind = iota + 1 // SET name = Value, set_config(…, false)
	EffectSetLocal                            // SET LOCAL, set_config(…, true)
	EffectReset                               // RESET name, SET name TO DEFAULT
	EffectResetAll                            // RESET ALL (and DISCARD ALL)
	EffectUnknownSet                          // set_config with a name pgcloak cannot read
	EffectBegin                               // BEGIN, START TRANSACTION
	EffectCommit                              // COMMIT, END, PREPARE TRANSACTION
	EffectRollback                            // ROLLBACK, ABORT
	EffectSavepoint                           // SAVEPOINT Name
	EffectRelease                             // RELEASE [SAVEPOINT] Name
	EffectRollbackTo                          // ROLLBACK TO [SAVEPOINT] Name
	EffectPrepare                             // PREPARE Name AS Statement
	EffectDeallocate                          // DEALLOCATE Name
	EffectDeallocateAll                       // DEALLOCATE ALL, DISCARD ALL
)

// Apply applies the effects of one statement that ran to completion.
// Prepared-statement effects are the session's business (they are not
// transactional); Apply ignores them.
func (s *Settings) Apply(effects []Effect) {
	for _, e := range effects {
		s.apply(e)
	}
}

func (s *Settings) apply(e Effect) {
	switch e.Kind {
	case EffectSet, EffectSetLocal:
		if !trackedSettings[e.Name] {
			return
		}
		s.begin()
		s.set(e.Name, gucValue{val: e.Value}, e.Kind == EffectSetLocal)
	case EffectReset:
		if !trackedSettings[e.Name] {
			return
		}
		s.begin()
		s.set(e.Name, gucValue{val: s.reset[e.Name]}, false)
	case EffectResetAll:
		s.begin()
		for name := range trackedSettings {
			if _, ok := s.vars[name]; ok || s.reset[name] != "" {
				s.set(name, gucValue{val: s.reset[name]}, false)
			}
		}
	case EffectUnknownSet:
		s.begin()
		for name := range trackedSettings {
			s.set(name, gucValue{unknown: true}, false)
		}
	case EffectBegin:
		if s.levels == 0 {
			s.levels = 1
		}
		s.implicit = false // BEGIN in an implicit block makes it a real one
	case EffectCommit:
		if s.levels == 0 {
			return // WARNING: there is no transaction in progress
		}
		if s.aborted {
			s.rollbackAll() // COMMIT of an aborted transaction rolls back
			return
		}
		for s.levels > 1 {
			s.endLevel(true)
		}
		s.endLevel(true)
		s.savepoints, s.implicit = nil, false
	case EffectRollback:
		s.rollbackAll()
	case EffectSavepoint:
		s.begin()
		s.implicit = false // savepoints need a transaction block; the server errs otherwise
		s.levels++
		s.savepoints = append(s.savepoints, e.Name)
	case EffectRelease:
		i := s.savepointIndex(e.Name)
		if i < 0 {
			return // the server errs
		}
		for len(s.savepoints) > i {
			s.endLevel(true)
			s.savepoints = s.savepoints[:len(s.savepoints)-1]
		}
	case EffectRollbackTo:
		i := s.savepointIndex(e.Name)
		if i < 0 {
			return
		}
		// Abort the levels above the savepoint and the savepoint's own,
		// then start it again.
		for len(s.savepoints) > i {
			s.endLevel(false)
			s.savepoints = s.savepoints[:len(s.savepoints)-1]
		}
		s.levels++
		s.savepoints = append(s.savepoints, e.Name)
		s.aborted = false
	}
}

// Failed applies an error of the statement running now: the innermost
// level (the savepoint's, else the transaction's) is aborted and its changes
// undone. An implicit transaction ends there; an explicit one stays open,
// aborted, until the client ends it.
func (s *Settings) Failed() {
	if s.levels == 0 {
		return
	}
	if s.levels == 1 || s.implicit {
		for s.levels > 0 {
			s.endLevel(false)
		}
		s.savepoints = nil
		if s.implicit {
			s.implicit, s.aborted = false, false
			return
		}
		s.levels, s.aborted = 1, true // the block is still open
		return
	}
	// In a savepoint: its level is aborted (ROLLBACK TO restarts it).
	s.undoLevel(s.levels)
	s.aborted = true
}

// EndImplicit ends an implicit transaction at the end of a Query or at a
// Sync: committed, as the server does when nothing failed.
func (s *Settings) EndImplicit() {
	if s.levels > 0 && s.implicit {
		for s.levels > 0 {
			s.endLevel(true)
		}
		s.savepoints, s.implicit = nil, false
	}
}

// Sync makes the transaction state agree with the server's report in
// ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed one.
func (s *Settings) Sync(status byte) {
	switch status {
	case 'I':
		if s.levels > 0 {
			// The server ended it: committed unless it had failed.
			if s.aborted {
				s.rollbackAll()
			} else {
				for s.levels > 0 {
					s.endLevel(true)
				}
			}
			s.savepoints, s.implicit, s.aborted = nil, false, false
		}
	case 'T':
		if s.levels == 0 {
			s.levels = 1
		}
		s.implicit, s.aborted = false, false
	case 'E':
		if s.levels == 0 {
			s.levels = 1
		}
		s.implicit, s.aborted = false, true
	}
}

func (s *Settings) rollbackAll() {
	for s.levels > 0 {
		s.endLevel(false)
	}
	s.savepoints, s.implicit, s.aborted = nil, false, false
}

func (s *Settings) savepointIndex(name string) int {
	for i := len(s.savepoints) - 1; i >= 0; i-- {
		if s.savepoints[i] == name {
			return i
		}
	}
	return -1
}

// set changes name at the current level (push_old_value and the state
// transitions of guc.c's set_config_option).
func (s *Settings) set(name string, v gucValue, local bool) {
	g := s.vars[name]
	if g == nil {
		g = &guc{val: s.reset[name]}
		s.vars[name] = g
	}
	cur := gucValue{val: g.val, unknown: g.unknown}
	n := len(g.stack)
	if n > 0 && g.stack[n-1].level == s.levels {
		e := &g.stack[n-1]
		switch e.state {
		case gucSave:
			if local {
				e.state = gucLocal
			} else {
				e.state = gucSet
			}
		case gucSet:
			if local {
				e.state, e.masked, e.hasMask = gucSetLocal, cur, true
			}
		case gucLocal:
			if !local {
				e.state = gucSet
			}
		case gucSetLocal:
			if !local {
				e.state, e.hasMask = gucSet, false
			}
		}
	} else {
		st := gucSet
		if local {
			st = gucLocal
		}
		g.stack = append(g.stack, gucEntry{level: s.levels, state: st, prior: cur})
	}
	g.val, g.unknown = v.val, v.unknown
}

// endLevel ends the innermost level (AtEOXact_GUC / AtEOSubXact_GUC):
// committed or aborted.
func (s *Settings) endLevel(commit bool) {
	level := s.levels
	for _, g := range s.vars {
		n := len(g.stack)
		if n == 0 || g.stack[n-1].level != level {
			continue
		}
		e := g.stack[n-1]
		g.stack = g.stack[:n-1]
		restore := func(v gucValue) { g.val, g.unknown = v.val, v.unknown }
		switch {
		case !commit || e.state == gucSave:
			restore(e.prior)
		case level == 1:
			// Top-level commit: SET stays, LOCAL goes.
			switch e.state {
			case gucLocal:
				restore(e.prior)
			case gucSetLocal:
				restore(e.masked)
			}
		default:
			// Subtransaction commit: the change becomes the outer level's.
			m := len(g.stack)
			if m > 0 && g.stack[m-1].level == level-1 {
				p := &g.stack[m-1]
				switch e.state {
				case gucSet:
					// The next level always becomes SET.
					p.state, p.hasMask = gucSet, false
				case gucLocal:
					// LOCAL migrates down onto a SET; else it is forgotten.
					if p.state == gucSet {
						p.state, p.masked, p.hasMask = gucSetLocal, e.prior, true
					}
				case gucSetLocal:
					// The masked SET value is copied down.
					p.state, p.masked, p.hasMask = gucSetLocal, e.masked, true
				}
			} else {
				e.level = level - 1
				g.stack = append(g.stack, e)
			}
		}
	}
	s.levels--
}

// undoLevel undoes the changes made at level without ending it.
func (s *Settings) undoLevel(level int) {
	for _, g := range s.vars {
		n := len(g.stack)
		if n == 0 || g.stack[n-1].level != level {
			continue
		}
		e := g.stack[n-1]
		g.stack = g.stack[:n-1]
		g.val, g.unknown = e.prior.val, e.prior.unknown
	}
}
