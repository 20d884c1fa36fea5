package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/subject"
	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// CatalogError says which rules of tables: do not match the database in a
// way that is a configuration mistake (a column that is not there, or not
// bytea), found when serve starts.
type CatalogError struct{ Problems []string }

func (e *CatalogError) Error() string {
	return "protected columns do not match the database:\n  " + strings.Join(e.Problems, "\n  ")
}

// byteaOID is pg_type.oid of bytea, the physical type of protected columns.
const byteaOID = 17

// column is one protected column with its keyring: what the session needs
// to encrypt and decrypt its values. Columns are made once per rule and
// shared by every Protection made from the same rules, so statements
// planned under an older snapshot stay valid.
type column struct {
	rule    *catalog.Rule
	plan    *sqlplan.Column // identity for the SQL analyzer
	id      crypto.ColumnID // associated data binding ciphertext to the column
	typ     *values.Type    // the logical type the application sees
	mode    crypto.Mode
	keyring *crypto.Keyring
	group   string // search_group of deterministic columns
	// migrating columns also hold plaintext (no pgcloak header) on read.
	migrating bool
	// subject is the table's subjects, for a subject-keyed column
	// (rule.Subject set); nil when no subject keys are loaded.
	subject *subject.Table
}

func (c *column) String() string { return c.rule.String() }

// sealedSize is the length of the ciphertext of a plaintext of n bytes.
func (c *column) sealedSize(n int) int {
	if c.rule.Subject != "" {
		return n + crypto.Subject.Overhead()
	}
	return n + c.mode.Overhead()
}

// Rules are the protected columns of a configuration bound to their
// keyrings, made once.
type Rules struct {
	loader *catalog.Loader
	cols   map[*catalog.Rule]*column
	byPlan map[*sqlplan.Column]*column
	keys   crypto.Keyrings
	shadow bool
	// subjects are the subject keys of the tables with subjects, or nil.
	subjects *subject.Keys
}

// NewRules resolves cfg's rules and binds each to its keyring.
func NewRules(cfg *config.Config, keys crypto.Keyrings) (*Rules, error) {
	return NewRulesWithSubjects(cfg, keys, nil)
}

// NewRulesWithSubjects is NewRules for a configuration with subjects:, whose
// subject keys subj keeps (nil: values of subject-keyed columns are
// refused).
func NewRulesWithSubjects(cfg *config.Config, keys crypto.Keyrings, subj *subject.Keys) (*Rules, error) {
	rules, err := catalog.Rules(cfg)
	if err != nil {
		return nil, err
	}
	rs := &Rules{
		loader:   catalog.NewLoader(rules),
		cols:     make(map[*catalog.Rule]*column, len(rules)),
		byPlan:   make(map[*sqlplan.Column]*column, len(rules)),
		keys:     keys,
		shadow:   cfg.Shadow,
		subjects: subj,
	}
	rs.loader.AllowMissingBackstop = cfg.AllowMissingBackstop
	for _, r := range rules {
		kr, err := keys.Keyring(r.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.ConfigKey(), err)
		}
		col := &column{rule: r, plan: r.Plan, id: r.ID, typ: r.Type, mode: r.Mode, keyring: kr, group: r.Group, migrating: r.Migrating}
		if r.Subject != "" && subj != nil {
			col.subject = subj.Table(r.Schema, r.Table)
		}
		rs.cols[r] = col
		rs.byPlan[r.Plan] = col
	}
	return rs, nil
}

// Load reads the catalog through conn into a Protection.
func (rs *Rules) Load(ctx context.Context, conn *pgx.Conn) (*Protection, error) {
	snap, err := rs.loader.Load(ctx, conn)
	if err != nil {
		return nil, err
	}
	return rs.protection(snap), nil
}

// protection makes the Protection of snap, a snapshot of rs's rules (the
// engine's tests make one without a database: catalog.NewStaticSnapshot).
func (rs *Rules) protection(snap *catalog.Snapshot) *Protection {
	return &Protection{Snapshot: snap, rules: rs, byPlan: rs.byPlan, shadow: rs.shadow, keys: rs.keys, database: snap.Database}
}

// Protection is the protected columns of the database as the catalog showed
// them at one moment, shared read-only by all sessions. It implements
// sqlplan.Catalog through its Snapshot. A catalog refresh makes a new one;
// sessions pick it up at their next statement.
type Protection struct {
	*catalog.Snapshot
	rules  *Rules
	byPlan map[*sqlplan.Column]*column
	shadow bool
	// keys may pick up key versions created since they were loaded.
	keys crypto.Keyrings
	// plans caches statement analyses for all sessions.
	plans planCache
	// database is the database the rules were resolved in (admin_dsn's):
	// relation OIDs and names mean nothing in another one.
	database string
	// unprotected holds the OIDs of relations that result columns came
	// from and that this catalog shows without protected columns.
	unprotected sync.Map
}

// LoadProtection resolves cfg's rules against the catalog through conn.
// A rule whose column is missing or not bytea is a configuration mistake:
// it returns a *CatalogError. Other problems (a missing backstop, a table
// not created yet) are in the Protection's Problems.
func LoadProtection(ctx context.Context, conn *pgx.Conn, cfg *config.Config, keys crypto.Keyrings) (*Protection, error) {
	rs, err := NewRules(cfg, keys)
	if err != nil {
		return nil, &CatalogError{Problems: []string{err.Error()}}
	}
	p, err := rs.Load(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := configProblems(p); err != nil {
		return nil, err
	}
	return p, nil
}

// notReadyReason says why sessions cannot be served with p, or "".
func (p *Protection) notReadyReason() string {
	b := p.Blocking()
	if len(b) == 0 {
		return ""
	}
	parts := make([]string, len(b))
	for i, pr := range b {
		parts[i] = pr.String()
	}
	return "protected columns do not match the database: " + strings.Join(parts, "; ")
}

// reloader is implemented by key loaders that can look for new versions.
type reloader interface {
	Reload(ctx context.Context) error
}

// reloadTimeout bounds a key refresh triggered by an unknown version.
const reloadTimeout = 5 * time.Second

// reload asks the key loader for new versions and returns why that failed
// (typically the KMS cannot be reached), or nil; loaders that cannot reload
// report nil. Loaders rate-limit this themselves.
func (p *Protection) reload() error {
	r, ok := p.keys.(reloader)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	return r.Reload(ctx)
}

// lookup returns the protected column behind a RowDescription field.
func (p *Protection) lookup(relOID uint32, attnum uint16) *column {
	r := p.Lookup(relOID, int16(attnum))
	if r == nil {
		return nil
	}
	return p.rules.cols[r]
}

// knownUnprotected reports whether relation oid was looked up in this
// protection's catalog and holds no protected column.
func (p *Protection) knownUnprotected(oid uint32) bool {
	_, ok := p.unprotected.Load(oid)
	return ok
}

// markUnprotected records that relation oid holds no protected column in
// this protection's catalog, so its result columns do not trigger a refresh
// again until the catalog changes.
func (p *Protection) markUnprotected(oid uint32) { p.unprotected.Store(oid, struct{}{}) }
