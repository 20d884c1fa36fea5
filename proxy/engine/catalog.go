package engine

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/crypto"
)

// The rules follow the live catalog. A table dropped and created again
// (a new OID), a column renamed or retyped, a backstop dropped, a view
// created around pgcloak: each changes what pgcloak must do, and none of
// them passes through pgcloak necessarily. The catalog is therefore read
// again:
//
//   - every catalog_refresh (default 5 s);
//   - after a session relayed DDL (CREATE, ALTER, DROP …), once its
//     transaction is over;
//   - when a session meets pgcloak ciphertext in a result column it cannot
//     attribute: the session waits for that refresh, then decrypts the
//     column if the new catalog says which one it is, or fails.
//
// Each read makes a new Protection when something changed; sessions pick it
// up at their next statement. A rule that no longer matches the database
// (column renamed, retyped, backstop missing) makes the statements using its
// table fail with 55000, and keeps new sessions to the database out (57P03)
// until it is fixed.

// CatalogSource is how WatchCatalog reads the catalog.
type CatalogSource struct {
	// Rules are the protected columns bound to their keyrings.
	Rules *Rules
	// Connect opens a connection to the protected database (admin_dsn).
	Connect func(ctx context.Context) (*pgx.Conn, error)
	// Every is the period of the refresh (config catalog_refresh).
	Every time.Duration
	// Release, if set, runs once when a reload has replaced Rules and no
	// session uses them any more (SetRules).
	Release func()
}

// catalogWatch is the Protector's side of the refresh: sessions ask for one
// and may wait for it.
type catalogWatch struct {
	mu      sync.Mutex
	running bool
	kick    chan struct{}      // a refresh was asked for
	reloads chan reloadRequest // SetRules
	waiters []chan struct{}    // closed by the next refresh that starts after they asked
}

// minRefreshGap bounds how often asked-for refreshes run.
const minRefreshGap = 50 * time.Millisecond

// WatchCatalog loads the protection from the catalog, makes the protector
// ready with it (sessions to the protected database stay refused while it
// has blocking problems: see Ready), calls loaded (if not nil), and keeps
// the protection in step until ctx ends; it returns nil then. The first
// load's error is returned at once (the caller decides whether to retry);
// later errors are logged and the last good protection stays in force.
func (s *Protector) WatchCatalog(ctx context.Context, src CatalogSource, loaded func()) error {
	w := &s.catalog
	w.mu.Lock()
	w.running = true
	w.kick = make(chan struct{}, 1)
	w.reloads = make(chan reloadRequest)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.wakeLocked()
		w.mu.Unlock()
	}()

	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	load := func(rules *Rules) (*Protection, error) {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if conn == nil || conn.IsClosed() {
			c, err := src.Connect(lctx)
			if err != nil {
				return nil, err
			}
			conn = c
		}
		p, err := rules.Load(lctx, conn)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
		}
		return p, err
	}
	p, err := load(src.Rules)
	if err != nil {
		return err
	}
	s.installRules(p, src.Release)
	s.loading.Store(nil)
	if loaded != nil {
		loaded()
	}

	tick := time.NewTicker(src.Every)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-w.reloads:
			err := s.reload(req, load)
			if err == nil && req.every > 0 {
				tick.Reset(req.every)
			}
			req.done <- err
			continue
		case <-tick.C:
		case <-w.kick:
			if d := time.Since(last); d < minRefreshGap {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(minRefreshGap - d):
				}
			}
		}
		// Whoever asked before this point is answered by this refresh.
		w.mu.Lock()
		waiting := w.waiters
		w.waiters = nil
		w.mu.Unlock()
		last = time.Now()
		cur := s.current.Load()
		next, err := load(cur.rules)
		if err != nil {
			s.log.Warn("catalog refresh failed; the last catalog read stays in force", zap.Error(err))
		} else if old := cur.prot.Load(); !next.Same(old.Snapshot) {
			cur.prot.Store(next)
			s.installProtection(next, old)
		}
		s.refreshRetired(load)
		for _, ch := range waiting {
			close(ch)
		}
	}
}

// installProtection logs what changed between old and p, the protection
// that new statements are planned with now.
func (s *Protector) installProtection(p, old *Protection) {
	was := map[string]bool{}
	if old != nil {
		for _, pr := range old.Problems {
			was[pr.String()] = true
		}
	}
	now := map[string]bool{}
	for _, pr := range p.Problems {
		now[pr.String()] = true
		if was[pr.String()] {
			continue
		}
		if pr.Blocking {
			s.log.Error("protected column does not match the database: sessions to it are refused until this is fixed",
				zap.String("column", pr.Target), zap.String("kind", pr.Kind), zap.String("problem", pr.Message), zap.String("fix", pr.Fix))
		} else {
			s.log.Warn("protected column does not match the database", zap.String("column", pr.Target), zap.String("kind", pr.Kind),
				zap.String("problem", pr.Message), zap.String("fix", pr.Fix))
		}
	}
	if old != nil {
		for _, pr := range old.Problems {
			if !now[pr.String()] {
				s.log.Info("protected column matches the database again", zap.String("column", pr.Target), zap.String("kind", pr.Kind))
			}
		}
		s.log.Info("catalog changed: new statements use the new catalog")
	}
}

// RefreshCatalog asks for a refresh and waits until one that started after
// the request has finished (or ctx ends, or nothing watches the catalog).
func (s *Protector) RefreshCatalog(ctx context.Context) {
	w := &s.catalog
	w.mu.Lock()
	if !w.running {
		w.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	w.waiters = append(w.waiters, ch)
	select {
	case w.kick <- struct{}{}:
	default:
	}
	w.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (w *catalogWatch) wakeLocked() {
	for _, ch := range w.waiters {
		close(ch)
	}
	w.waiters = nil
}

// Protecting reports whether protected columns have been loaded and the
// load is complete (the protector may still be not ready because of what it
// found: see Ready).
func (s *Protector) Protecting() bool { return s.protection() != nil && s.loading.Load() == nil }

// Keys returns the keyrings protected columns are encrypted with (nil
// before they are loaded).
func (s *Protector) Keys() crypto.Keyrings {
	if p := s.protection(); p != nil {
		return p.keys
	}
	return nil
}
