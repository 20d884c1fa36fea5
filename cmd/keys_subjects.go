package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/subject"
)

// subjectKeysCommands are the keys subcommands of subject keys: shred and
// status.
func subjectKeysCommands(g *globals) []*cobra.Command {
	var now bool
	shred := &cobra.Command{
		Use:   "shred",
		Short: "Shred rotation of the subject keyrings when due: backups lose the subjects forgotten before it",
		Long: `For each keyring that wraps subject keys (subjects.*.key), when its newest version is
shred_window old (or at once with --now): rotates its Vault Transit key, adds a keyring version
wrapped by the new Transit version, rewraps every live subject key under it, deletes the older
keyring versions from pgcloak.keys and retires the older Transit versions
(min_decryption_version, then trim). Afterwards no backup taken before the rotation can unwrap
any subject key: a subject forgotten before it is gone everywhere. Live subjects keep their keys
(rewrapped), and running pgcloak instances are not disturbed.

pgcloak serve does this by itself when it is due; run it from cron instead if serve's Vault
token may not rotate and trim. A rotation that stopped half-way is finished by the next run.
The Vault token needs, on the subject keyring's Transit key, update on transit/keys/K/rotate,
transit/keys/K/config, transit/keys/K/trim, transit/encrypt/K and transit/decrypt/K, and read on
transit/keys/K.`,
		Args: cobra.NoArgs,
		RunE: g.keysRun(func(ctx context.Context, e *keysEnv, _ []string) error { return keysShred(ctx, e, now) }),
	}
	shred.Flags().BoolVar(&now, "now", false, "rotate even if not due")
	status := &cobra.Command{
		Use:   "status",
		Short: "Which backups can still read subject-keyed values, and when forgotten subjects are gone everywhere",
		Args:  cobra.NoArgs,
		RunE:  g.keysRun(keysStatus),
	}
	return []*cobra.Command{shred, status}
}

// shredEnv is what a shred rotation needs besides the options.
type shredEnv struct {
	kms  *kmsConn
	conn *pgx.Conn
}

func openShredEnv(ctx context.Context, cfg *config.Config, log *zap.Logger) (*shredEnv, error) {
	kms, err := openKMS(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, cfg.AdminDSN)
	if err != nil {
		kms.close()
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	return &shredEnv{kms: kms, conn: conn}, nil
}

func (s *shredEnv) close() {
	s.conn.Close(context.Background())
	s.kms.close()
}

// shred runs Shred for keyring.
func (s *shredEnv) shred(ctx context.Context, cfg *config.Config, store *keystore.Store, keyring string, early time.Duration, force bool, log *zap.Logger) (subject.ShredResult, error) {
	o := subject.ShredOptions{Conn: s.conn, Store: store, KMS: s.kms, Keyring: keyring, KEK: s.kms.kek(cfg, keyring),
		Window: cfg.ShredWindowOrDefault(), Early: early, Force: force, Log: log}
	if s.kms.vault != nil {
		o.Transit = s.kms.vault
	}
	return subject.Shred(ctx, o)
}

func keysShred(ctx context.Context, e *keysEnv, force bool) error {
	rings := e.cfg.SubjectKeyrings()
	if len(rings) == 0 {
		return errors.New("the config names no table under subjects:, so there are no subject keys to shred")
	}
	s, err := openShredEnv(ctx, e.cfg, e.log)
	if err != nil {
		return err
	}
	defer s.close()
	for _, k := range rings {
		res, err := s.shred(ctx, e.cfg, e.store, k, 0, force, e.log)
		if err != nil {
			return fmt.Errorf("keyring %s: %w", k, err)
		}
		printShred(e.out, k, s.kms.kek(e.cfg, k), res)
	}
	return nil
}

func printShred(w io.Writer, keyring, kek string, r subject.ShredResult) {
	switch {
	case r.Rotated || len(r.Destroyed) > 0:
		fmt.Fprintf(w, "keyring %s: version %d wraps every subject key (%d rewrapped); destroyed version(s) %s in pgcloak.keys\n",
			keyring, r.Version, r.Rewrapped, joinVersions(r.Destroyed))
	default:
		fmt.Fprintf(w, "keyring %s: not due; version %d wraps every subject key\n", keyring, r.Version)
	}
	if r.TransitMin > 0 {
		fmt.Fprintf(w, "Transit key %s: versions below %d retired and trimmed; no backup taken before version %d was made can unwrap a subject key\n", kek, r.TransitMin, r.Version)
	} else if kek == keystore.LocalKEK {
		fmt.Fprintln(w, "kms.local: the master key has no versions to retire, so backups keep every subject key they hold (use Vault for erasure that reaches backups)")
	}
	fmt.Fprintf(w, "next shred rotation due %s\n", r.Next.UTC().Format(time.RFC3339))
}

func joinVersions(vs []uint32) string {
	if len(vs) == 0 {
		return "(none)"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

func keysStatus(ctx context.Context, e *keysEnv, _ []string) error {
	rings := e.cfg.SubjectKeyrings()
	if len(rings) == 0 {
		fmt.Fprintln(e.out, "no table under subjects:: no subject keys, nothing is shredded (backups of keyring columns stay readable while their Transit keys keep their versions)")
		return nil
	}
	s, err := openShredEnv(ctx, e.cfg, e.log)
	if err != nil {
		return err
	}
	defer s.close()
	for i, k := range rings {
		if i > 0 {
			fmt.Fprintln(e.out)
		}
		if err := ringStatus(ctx, e, s, k); err != nil {
			return fmt.Errorf("keyring %s: %w", k, err)
		}
	}
	return nil
}

// ringStatus prints the shred status of one subject keyring.
func ringStatus(ctx context.Context, e *keysEnv, s *shredEnv, keyring string) error {
	w, cfg, now := e.out, e.cfg, time.Now()
	var tables []string
	for _, t := range slices.Sorted(maps.Keys(cfg.Subjects)) {
		if cfg.Subjects[t].Key == keyring {
			tables = append(tables, t)
		}
	}
	window := cfg.ShredWindowOrDefault()
	fmt.Fprintf(w, "keyring %s: wraps the subject keys of %s; shred_window %s\n", keyring, strings.Join(tables, ", "), days(window))
	recs, err := e.store.Records(ctx, keyring)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintln(w, "  no version: run pgcloak keys init")
		return nil
	}
	active := recs[len(recs)-1]
	due := active.CreatedAt.Add(window)
	late := ""
	if now.After(due) {
		late = " (overdue: run pgcloak keys shred, or check serve's log)"
	}
	fmt.Fprintf(w, "  version %d wraps new subject keys; made %s; next shred rotation due %s%s\n", active.Version, ts(active.CreatedAt), ts(due), late)
	var live, behind, forgottenAll int64
	var lastShred, lastForget *time.Time
	var destroyed []int32
	var kekMin *int32
	err = s.conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM pgcloak.subject_keys WHERE keyring = $1),
			(SELECT count(*) FROM pgcloak.subject_keys WHERE keyring = $1 AND wrap_version < $2),
			(SELECT count(*) FROM pgcloak.forgotten WHERE keyring = $1)`, keyring, int32(active.Version)).Scan(&live, &behind, &forgottenAll)
	if err != nil {
		return subjectTablesErr(err)
	}
	err = s.conn.QueryRow(ctx, `SELECT finished_at, destroyed, kek_min_version FROM pgcloak.shreds WHERE keyring = $1 ORDER BY id DESC LIMIT 1`, keyring).Scan(&lastShred, &destroyed, &kekMin)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return subjectTablesErr(err)
	}
	fmt.Fprintf(w, "  subject keys: %d live", live)
	if behind > 0 {
		fmt.Fprintf(w, ", %d still under older versions (a shred rotation stopped half-way: run pgcloak keys shred)", behind)
	}
	fmt.Fprintln(w)
	kek := s.kms.kek(cfg, keyring)
	if s.kms.vault != nil {
		v, err := s.kms.vault.Versions(ctx, kek)
		if err != nil {
			return err
		}
		trimmed := "none deleted"
		if v.MinAvailable > 1 {
			trimmed = fmt.Sprintf("versions below %d deleted", v.MinAvailable)
		}
		fmt.Fprintf(w, "  Transit key %s: latest v%d, min_decryption_version %d, %s\n", kek, v.Latest, v.MinDecryption, trimmed)
	}
	var since int64
	if lastShred != nil {
		if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pgcloak.forgotten WHERE keyring = $1 AND forgotten_at > $2`, keyring, *lastShred).Scan(&since); err != nil {
			return err
		}
	} else {
		since = forgottenAll
	}
	_ = s.conn.QueryRow(ctx, `SELECT max(forgotten_at) FROM pgcloak.forgotten WHERE keyring = $1`, keyring).Scan(&lastForget)
	switch {
	case kek == keystore.LocalKEK:
		fmt.Fprintln(w, "  backups: kms.local cannot retire versions: every backup can read the subject keys it holds, forgotten ones included (use Vault for erasure that reaches backups)")
	case lastShred == nil:
		fmt.Fprintf(w, "  backups: no shred rotation yet: every backup can read the subject-keyed values it holds until the first one, due %s\n", ts(due))
	case kekMin == nil:
		fmt.Fprintf(w, "  backups: the last shred rotation (%s) has not retired its Transit versions yet: older backups can still be read; run pgcloak keys shred\n", ts(*lastShred))
	default:
		fmt.Fprintf(w, "  backups: the oldest that can read subject-keyed values was taken after %s (the last shred rotation, which destroyed version %s); it can until the next rotation, due %s\n",
			ts(*lastShred), joinVersions(int32s(destroyed)), ts(due))
		fmt.Fprintln(w, "           older backups cannot; columns of keyrings without subjects are not affected")
	}
	switch {
	case forgottenAll == 0:
		fmt.Fprintln(w, "  forgotten: none yet")
	case kek == keystore.LocalKEK:
		fmt.Fprintf(w, "  forgotten: %d subject(s); gone from the database and the instances, not from backups (kms.local)\n", forgottenAll)
	default:
		fmt.Fprintf(w, "  forgotten: %d subject(s), the last at %s; %d since the last shred rotation: recoverable from backups taken before their forget until the next rotation (%s), gone everywhere after it",
			forgottenAll, ts(*lastForget), since, ts(due))
		if gone := forgottenAll - since; gone > 0 {
			fmt.Fprintf(w, "; %d before it: gone everywhere", gone)
		}
		fmt.Fprintln(w)
	}
	return nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func int32s(v []int32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = uint32(x)
	}
	return out
}

// subjectTablesErr says to run keys init when the subject tables are missing.
func subjectTablesErr(err error) error {
	if strings.Contains(err.Error(), "42P01") {
		return fmt.Errorf("%w; run pgcloak keys init", subject.ErrNotInitialized)
	}
	return err
}
