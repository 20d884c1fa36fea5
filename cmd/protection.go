package cmd

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/subject"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// protection is serve's side of the encryption engine: it loads the keys
// (retrying while Vault cannot be reached), resolves the rules, keeps the
// catalog in step (engine.Protector.WatchCatalog) and applies reloads.
type protection struct {
	prot    *engine.Protector
	log     *zap.Logger
	metrics *opsMetrics // nil: KMS requests not observed

	mu sync.Mutex
	// cfg is the configuration whose rules are in force, or, before the
	// first load, the one the next attempt uses.
	cfg *config.Config
	// keys are the keyrings of cfg; nil until loaded. all holds every set
	// of keyrings not closed yet (a reload replaces keys, rule sets still
	// in use keep theirs).
	keys *keySet
	all  map[*keySet]struct{}
	// watching: the catalog watch has loaded the rules (reloads go through
	// Protector.SetRules from then on).
	watching bool
}

// keySet is one loaded set of keyrings, shared by the rule sets made with
// it; it is closed (keys zeroed) when the last of them lets go.
type keySet struct {
	loader *keystore.Loader // nil without keys
	// subjects are the subject keys of the subjects: tables; nil: none.
	subjects *subject.Keys
	close    func()
	refs     atomic.Int32
	once     sync.Once
}

func (k *keySet) keyrings() crypto.Keyrings {
	if k.loader == nil {
		return crypto.StaticKeyrings{}
	}
	return k.loader
}

func (k *keySet) unref() {
	if k.refs.Add(-1) == 0 {
		k.once.Do(k.close)
	}
}

func newProtection(cfg *config.Config, log *zap.Logger, prot *engine.Protector, m *opsMetrics) *protection {
	return &protection{prot: prot, log: log, metrics: m, cfg: cfg, all: map[*keySet]struct{}{}}
}

// ServeProtection is what serve does to protect columns: it loads the keys
// (retrying while Vault cannot be reached), resolves the rules and keeps
// srv's protection in step with the catalog until ctx ends. It returns the
// function that zeroes the keys, or nil when ctx ended first or a rule
// cannot be resolved (then the error is sent on fatal). Tests start pgcloak
// through it too.
//
// Rules that do not match the database (a missing backstop, a column that
// is not bytea …) keep sessions to the protected database out, with the
// reason and the fix in /readyz and the log, until they are fixed.
func ServeProtection(ctx context.Context, cfg *config.Config, log *zap.Logger, srv *engine.Protector, fatal chan<- error) func() {
	return newProtection(cfg, log, srv, nil).serve(ctx, fatal)
}

func (p *protection) serve(ctx context.Context, fatal chan<- error) func() {
	delay := time.Second
	var cfg *config.Config
	var keys *keySet
	for {
		p.mu.Lock()
		cfg = p.cfg // a reload meanwhile is used by the next attempt
		p.mu.Unlock()
		if cfg.AllowMissingBackstop {
			p.log.Warn("allow_missing_backstop is set: protected columns without their CHECK backstop are served, " +
				"so a write that goes around pgcloak could store plaintext in them; use it only during a roll-out")
		}
		k, err := p.openKeys(ctx, cfg)
		if err == nil {
			p.mu.Lock()
			current := p.cfg == cfg
			if current {
				p.keys = k
			}
			p.mu.Unlock()
			if current {
				keys = k
				break
			}
			p.release(k) // a reload came meanwhile: load its keys instead
			continue
		}
		p.prot.SetNotReady("keys: " + err.Error())
		p.log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
	rules, err := engine.NewRulesWithSubjects(cfg, keys.keyrings(), keys.subjects)
	if err != nil {
		keys.unref()
		fatal <- err
		return nil
	}
	// Access rules and the audit log are in place before the first
	// session: a session that starts before would not be guarded.
	closeAudit := guardProtection(ctx, cfg, p.log, p.prot)
	if closeAudit == nil {
		keys.unref()
		return nil
	}
	// The shred window and retention schedules run with the configuration
	// serve started with (a reload does not change them).
	if keys.subjects != nil {
		go runShredSchedule(ctx, cfg, p.log)
	}
	if cfg.RetentionSchedule > 0 {
		go runRetentionSchedule(ctx, cfg, p.log)
	}
	keys.refs.Add(1) // the first rule set's
	src := engine.CatalogSource{Rules: rules, Every: cfg.CatalogRefresh, Connect: adminConnect(cfg), Release: func() { p.release(keys) }}
	go func() {
		delay := time.Second
		for {
			err := p.prot.WatchCatalog(ctx, src, func() {
				p.mu.Lock()
				p.watching = true
				p.mu.Unlock()
				if ok, why := p.prot.Ready(); ok {
					p.log.Info("ready: keys and protected columns loaded", zap.Int("tables", len(cfg.Tables)))
				} else {
					p.log.Error("not ready: "+why, zap.String("fix", "pgcloak check --config FILE lists each problem with its fix"))
				}
			})
			if err == nil || ctx.Err() != nil {
				return
			}
			p.prot.SetNotReady(err.Error())
			p.log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
		}
	}()
	return func() { closeAudit(); p.closeAll() }
}

// openKeys loads cfg's keyrings; the KMS requests are observed.
func (p *protection) openKeys(ctx context.Context, cfg *config.Config) (*keySet, error) {
	l, closeFn, err := openKeyrings(ctx, cfg, p.log, p.metrics)
	if err != nil {
		return nil, err
	}
	subjects, err := openSubjects(ctx, cfg, l, p.log)
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("subject keys: %w", err)
	}
	k := &keySet{loader: l, subjects: subjects, close: func() {
		if subjects != nil {
			subjects.Close()
		}
		closeFn()
	}}
	k.refs.Store(1) // the protection's own reference, while they are the current keys
	p.mu.Lock()
	p.all[k] = struct{}{}
	p.mu.Unlock()
	return k, nil
}

// closeAll zeroes every key, after the last session.
func (p *protection) closeAll() {
	p.mu.Lock()
	sets := p.all
	p.all = map[*keySet]struct{}{}
	p.mu.Unlock()
	for k := range sets {
		k.once.Do(k.close)
	}
}

// adminConnect opens pgcloak's own connection to the protected database.
func adminConnect(cfg *config.Config) func(ctx context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) {
		conn, err := pgx.Connect(ctx, cfg.AdminDSN)
		if err != nil {
			return nil, fmt.Errorf("admin_dsn: %w", err)
		}
		return conn, nil
	}
}

// sameKeys reports whether a and b load the same keys the same way, so a
// reload can keep the keyrings in memory (no KMS request).
func sameKeys(a, b *config.Config) bool {
	return a.AdminDSN == b.AdminDSN && a.KeyRefresh == b.KeyRefresh &&
		reflect.DeepEqual(a.KMS, b.KMS) && reflect.DeepEqual(a.Keys, b.Keys) &&
		reflect.DeepEqual(a.Subjects, b.Subjects) && a.SubjectCache == b.SubjectCache
}

// sameRules reports whether a and b protect the same way: same keys, rules
// and the settings the engine reads.
func sameRules(a, b *config.Config) bool {
	return sameKeys(a, b) && reflect.DeepEqual(a.Tables, b.Tables) && a.CatalogRefresh == b.CatalogRefresh &&
		a.Shadow == b.Shadow && a.AllowMissingBackstop == b.AllowMissingBackstop
}

// reload applies cfg's protection (rules, keys, catalog_refresh, shadow,
// allow_missing_backstop) to new sessions, or fails and changes nothing.
// While the keys are not loaded yet it only makes cfg the one the next
// attempt uses.
func (p *protection) reload(ctx context.Context, cfg *config.Config) error {
	p.mu.Lock()
	old, cur, watching := p.cfg, p.keys, p.watching
	p.mu.Unlock()
	keys := cur
	if !watching && keys == nil {
		// Still waiting for the keys (Vault unreachable): the next attempt
		// builds everything from this configuration.
		p.mu.Lock()
		p.cfg = cfg
		p.mu.Unlock()
		p.log.Info("the keys are not loaded yet: the next attempt uses the reloaded configuration")
		return nil
	}
	if !watching {
		return errors.New("the catalog has not been read yet (see /readyz); reload once pgcloak is ready, or restart it")
	}
	if err := p.reloadAccess(old, cfg); err != nil {
		return err
	}
	if sameRules(old, cfg) {
		p.mu.Lock()
		p.cfg = cfg
		p.mu.Unlock()
		return nil // nothing the engine uses changed: sessions keep one rule set
	}
	fresh := !sameKeys(old, cfg)
	if fresh {
		k, err := p.openKeys(ctx, cfg)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		keys = k
	}
	drop := func() {
		if fresh {
			p.forget(keys)
			keys.unref()
		}
	}
	rules, err := engine.NewRulesWithSubjects(cfg, keys.keyrings(), keys.subjects)
	if err != nil {
		drop()
		return err
	}
	keys.refs.Add(1) // the new rule set's
	if err := p.prot.SetRules(ctx, rules, cfg.CatalogRefresh, func() { p.release(keys) }); err != nil {
		keys.refs.Add(-1)
		drop()
		var ce *engine.CatalogError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("reading the catalog: %w", err)
	}
	p.mu.Lock()
	p.cfg = cfg
	if fresh {
		p.keys = keys
	}
	p.mu.Unlock()
	if fresh {
		p.log.Info("keys reloaded: new sessions use the new keyrings; the old ones are zeroed when their last session ends")
		p.release(cur) // the protection's own reference
	}
	return nil
}

// reloadAccess gives the sessions that start from now on cfg's access
// rules; running sessions keep the access they logged in with. The audit
// log stays as it was opened: a change of audit: needs a restart.
func (p *protection) reloadAccess(old, cfg *config.Config) error {
	if !reflect.DeepEqual(old.Audit, cfg.Audit) {
		return errors.New("audit: changed: the audit log is opened at start; restart pgcloak to change it")
	}
	if reflect.DeepEqual(old.Access, cfg.Access) {
		return nil
	}
	policy, err := access.New(cfg)
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	p.prot.SetPolicy(policy)
	p.log.Info("access rules reloaded: new sessions use them; running sessions keep theirs until they end")
	return nil
}

// release drops a reference to keys (a rule set that was using them ended).
func (p *protection) release(k *keySet) {
	if k.refs.Add(-1) == 0 {
		p.forget(k)
		k.once.Do(k.close)
	}
}

func (p *protection) forget(k *keySet) {
	p.mu.Lock()
	delete(p.all, k)
	p.mu.Unlock()
}
