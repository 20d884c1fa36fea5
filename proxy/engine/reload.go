package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// A reload of the configuration can change the rules (tables:, keys …).
// What a running session does then:
//
//   - A session keeps the rule set it logged in with until it ends: its
//     prepared statements, portals and cursors were planned and described
//     to the client under those rules, and a column that changed type under
//     a client's feet (bytea yesterday, text now) would break the client or
//     let plaintext through a statement planned before. Its catalog is kept
//     in step with the database as before (every catalog_refresh, after
//     DDL), so a dropped or renamed table is noticed by old sessions too.
//   - New sessions get the new rule set from the moment SetRules returns.
//   - A rule removed while old sessions still encrypt that column is safe:
//     they write ciphertext, which the database keeps accepting as long as
//     the column's backstop stays (drop the backstop only after the old
//     sessions are gone: SHOW CLIENTS).
//   - A rule added (state: migrating after the plan's DDL) reaches new
//     sessions at once; old sessions keep treating that column as plain
//     bytea until they end, as sessions of an instance that has not been
//     restarted yet would. The backstop added by migrate encrypt refuses
//     what they would write unencrypted, so nothing is stored in the clear
//     once it is in place; make the application reconnect (or KILL its
//     sessions) after the reload to move every session over.
//
// A rule set that no session uses any more is released: its catalog is not
// read again and its keys, when a reload replaced them, are zeroed.

// ruleSet is the rules of one configuration with the newest protection read
// for them.
type ruleSet struct {
	rules *Rules
	prot  atomic.Pointer[Protection]
	// users counts the sessions pinned to it; released: it was retired and
	// released (Protector.mu guards both).
	users    int
	released bool
	// release runs once, when the rule set is retired and unused (it
	// closes keys a reload replaced); nil: nothing to do.
	release func()
}

// reloadRequest asks the catalog watch to make rules current.
type reloadRequest struct {
	rules   *Rules
	every   time.Duration
	release func()
	done    chan error
}

// installRules makes p, read for a new rule set, the protection of new
// sessions; the rule set it replaces is retired (release runs when its last
// session ends). release belongs to the new rule set.
func (s *Protector) installRules(p *Protection, release func()) {
	rs := &ruleSet{rules: p.rules, release: release}
	rs.prot.Store(p)
	var old *Protection
	s.mu.Lock()
	prev := s.current.Swap(rs)
	var unused *ruleSet
	if prev != nil {
		old = prev.prot.Load()
		if prev.users > 0 {
			s.retired = append(s.retired, prev)
		} else {
			prev.released, unused = true, prev
		}
	}
	s.mu.Unlock()
	if unused != nil && unused.release != nil {
		unused.release()
	}
	s.installProtection(p, old)
}

// SetRules makes rules the rule set of new sessions, once their catalog
// has been read; every is the new catalog_refresh (0: unchanged). release
// runs when the rule set is replaced in turn and no session uses it any
// more. It fails, and nothing changes, when the catalog cannot be read or a
// rule does not fit the database (a column missing or not bytea: a
// *CatalogError). It needs WatchCatalog running.
func (s *Protector) SetRules(ctx context.Context, rules *Rules, every time.Duration, release func()) error {
	w := &s.catalog
	w.mu.Lock()
	running, reloads := w.running, w.reloads
	w.mu.Unlock()
	if !running {
		return errors.New("the catalog is not being watched yet")
	}
	req := reloadRequest{rules: rules, every: every, release: release, done: make(chan error, 1)}
	select {
	case reloads <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reload serves a reloadRequest in the catalog watch.
func (s *Protector) reload(req reloadRequest, load func(*Rules) (*Protection, error)) error {
	p, err := load(req.rules)
	if err != nil {
		return err
	}
	if err := configProblems(p); err != nil {
		return err
	}
	s.installRules(p, req.release)
	s.log.Info("rules reloaded: new sessions use them; running sessions keep theirs until they end",
		zap.Int("columns", len(req.rules.cols)))
	return nil
}

// refreshRetired reads the catalog again for the retired rule sets that
// sessions still use.
func (s *Protector) refreshRetired(load func(*Rules) (*Protection, error)) {
	s.mu.Lock()
	sets := append([]*ruleSet(nil), s.retired...)
	s.mu.Unlock()
	for _, rs := range sets {
		next, err := load(rs.rules)
		if err != nil {
			continue // logged by the refresh of the current rules
		}
		if !next.Same(rs.prot.Load().Snapshot) {
			rs.prot.Store(next)
		}
	}
}

// acquire pins the session to its rule set (when the relay starts it); a
// rule set released since the session was made is replaced by the current
// one (nothing was planned with it yet).
func (ss *session) acquire() {
	p := ss.prot
	p.mu.Lock()
	if ss.rs.released {
		ss.rs = p.current.Load()
		ss.cloak.p = ss.rs.prot.Load()
	}
	ss.rs.users++
	p.mu.Unlock()
}

// unpin ends the session's use of its rule set, once.
func (ss *session) unpin() {
	if !ss.pinned.CompareAndSwap(true, false) {
		return
	}
	p := ss.prot
	p.mu.Lock()
	rs := ss.rs
	rs.users--
	var unused *ruleSet
	if rs.users == 0 && rs != p.current.Load() && !rs.released {
		rs.released, unused = true, rs
		for i, r := range p.retired {
			if r == rs {
				p.retired = append(p.retired[:i], p.retired[i+1:]...)
				break
			}
		}
	}
	p.mu.Unlock()
	if unused != nil && unused.release != nil {
		unused.release()
	}
}

// RuleSets reports how many rule sets are in use: the current one and those
// that sessions started before a reload still use.
func (s *Protector) RuleSets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.retired)
	if s.current.Load() != nil {
		n++
	}
	return n
}

// configProblems is the error for rules that do not fit the database in a
// way only the configuration can fix (a column missing or not bytea).
func configProblems(p *Protection) error {
	var problems []string
	for _, pr := range p.Problems {
		if pr.Blocking && (pr.Kind == catalog.KindColumnMissing || pr.Kind == catalog.KindColumnType) {
			problems = append(problems, fmt.Sprintf("%s: %s", pr.Rule.ConfigKey(), pr.Message+"; "+pr.Fix))
		}
	}
	if len(problems) > 0 {
		return &CatalogError{Problems: problems}
	}
	return nil
}

// RuleStatus is one rule of the current rule set as the newest catalog
// read shows it (the console's SHOW RULES).
type RuleStatus struct {
	Rule *catalog.Rule
	// Placed: the column was found in the catalog, bytea.
	Placed   bool
	Backstop catalog.BackstopState
	// Problems are this rule's mismatches, each with its fix.
	Problems []string
}

// RuleStatus reports every rule of the current rule set, in the order of
// the configuration (schema, table, column).
func (s *Protector) RuleStatus() []RuleStatus {
	p := s.protection()
	if p == nil {
		return nil
	}
	out := make([]RuleStatus, 0, len(p.Rules))
	for _, r := range p.Rules {
		st := RuleStatus{Rule: r, Placed: p.Placed(r), Backstop: p.Backstop(r)}
		for _, pr := range p.Problems {
			if pr.Rule == r {
				st.Problems = append(st.Problems, pr.String())
			}
		}
		out = append(out, st)
	}
	return out
}
