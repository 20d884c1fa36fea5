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
	fmt.Fprintf(w, "backups taken before now can still unwrap its key until the next shred rotation (at most shred_window, %s; pgcloak keys status says when)\n", days(cfg.ShredWindowOrDefault()))
	return nil
}

// days writes a duration of whole days as "30d", others as Go does.
func days(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
