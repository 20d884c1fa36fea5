package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/subject"
)

// initSubjects is the part of keys init for subjects:: the subject tables
// and functions, and the tables with subjects registered for
// pgcloak.forget.
func initSubjects(ctx context.Context, e *keysEnv) error {
	conn, err := pgx.Connect(ctx, e.cfg.AdminDSN)
	if err != nil {
		return fmt.Errorf("admin_dsn: %w", err)
	}
	defer conn.Close(context.Background())
	lines, err := subject.Setup(ctx, conn, e.cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.out, "subject keys: tables pgcloak.subject_keys, pgcloak.forgotten, pgcloak.subject_tables and function pgcloak.forget(regclass, text) in place")
	for _, l := range lines {
		fmt.Fprintln(e.out, l)
	}
	return nil
}

// openSubjects opens the subject keys of cfg's subjects: for serve (nil
// without subjects).
func openSubjects(ctx context.Context, cfg *config.Config, keys *keystore.Loader, log *zap.Logger) (*subject.Keys, error) {
	if len(cfg.Subjects) == 0 {
		return nil, nil
	}
	return subject.Open(ctx, cfg, keys, log)
}

// forgottenReads says what reads of a forgotten subject return.
func forgottenReads(subjects map[string]config.Subject) string {
	for _, s := range subjects {
		if s.ForgottenReads == config.ForgottenError {
			return "NULL (or an error, where forgotten_reads: error)"
		}
	}
	return "NULL"
}

// printShredDue says when backups lose a subject forgotten now.
func printShredDue(ctx context.Context, w io.Writer, conn *pgx.Conn, cfg *config.Config) error {
	var made *time.Time
	if err := conn.QueryRow(ctx, `SELECT min(newest) FROM (SELECT max(created_at) AS newest FROM pgcloak.keys WHERE keyring = ANY($1) GROUP BY keyring) k`,
		cfg.SubjectKeyrings()).Scan(&made); err != nil {
		return err
	}
	due := "the next shred rotation"
	if made != nil {
		due += ", due " + made.Add(cfg.ShredWindowOrDefault()).UTC().Format(time.RFC3339)
	}
	if cfg.KMS != nil && cfg.KMS.Local != nil {
		fmt.Fprintln(w, "kms.local: backups taken before now keep its key (the local master key cannot be retired)")
		return nil
	}
	fmt.Fprintf(w, "backups taken before now hold its key, wrapped, until %s (shred_window %s); then nothing can unwrap it\n", due, days(cfg.ShredWindowOrDefault()))
	return nil
}

// runShredSchedule makes serve run the shred rotations of the subject
// keyrings when they are due, until ctx ends. It looks every twentieth of
// shred_window (at most every hour, at least every half second) and
// rotates that much early, so that no forgotten subject outlives the window
// in a backup. Every instance does this; an advisory lock and the due date
// make one rotation happen.
func runShredSchedule(ctx context.Context, cfg *config.Config, log *zap.Logger) {
	window := cfg.ShredWindowOrDefault()
	every := min(max(window/20, 500*time.Millisecond), time.Hour)
	var env *shredEnv
	var store *keystore.Store
	defer func() {
		if env != nil {
			env.close()
			store.Close()
		}
	}()
	var lastErr string
	for first := true; first || sleep(ctx, every); first = false {
		if env == nil {
			var err error
			if env, err = openShredEnv(ctx, cfg, log); err == nil {
				if store, err = keystore.OpenStore(ctx, cfg.AdminDSN); err != nil {
					env.close()
					env = nil
				}
			}
			if err != nil && ctx.Err() == nil && err.Error() != lastErr {
				log.Warn("shred rotations: cannot reach Vault or the database; retrying", zap.Error(err))
				lastErr = err.Error()
			}
		}
		if env != nil {
			for _, k := range cfg.SubjectKeyrings() {
				rctx, cancel := context.WithTimeout(ctx, time.Hour)
				res, err := env.shred(rctx, cfg, store, k, every, false, log)
				cancel()
				switch {
				case err != nil && ctx.Err() == nil:
					log.Warn("shred rotation failed; forgotten subjects stay in backups until it succeeds (pgcloak keys status)", zap.String("keyring", k), zap.Error(err))
					env.close()
					store.Close()
					env = nil
				case res.Rotated || len(res.Destroyed) > 0:
					log.Info("shred rotation done: backups taken before it can no longer unwrap any subject key", zap.String("keyring", k),
						zap.Uint32("version", res.Version), zap.Int64("rewrapped", res.Rewrapped), zap.Int("transit_min_version", res.TransitMin),
						zap.Time("next", res.Next))
				}
				if env == nil {
					break
				}
			}
		}
	}
}

// sleep waits d, or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// days writes a duration of whole days as "30d", others as Go does.
func days(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
