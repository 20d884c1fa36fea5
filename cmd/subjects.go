package cmd

import (
	"context"
	"fmt"

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
