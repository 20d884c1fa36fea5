package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/localkms"
	"github.com/pgcloak/pgcloak/crypto/vault"
)

// keysTimeout bounds one keys command.
const keysTimeout = 5 * time.Minute

func keysCommand(g *globals) *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Manage the data keys in pgcloak.keys (init, rotate, list, rewrap)",
		Long: `Data keys (DEKs) encrypt the protected columns. Each keyring of the config's keys:
section is a list of DEK versions; the newest encrypts, all decrypt. DEKs are stored in
the table pgcloak.keys of the protected database (admin_dsn), wrapped by the keyring's
Vault Transit key (the KEK), and shared by every pgcloak instance. See docs/keys.md.`,
	}
	keys.AddCommand(
		&cobra.Command{
			Use:   "init",
			Short: "Create pgcloak.keys, the Transit keys and each keyring's first version (idempotent)",
			Long: `Creates the pgcloak schema and the pgcloak.keys table if missing, the Vault Transit key of
each keyring if missing (type aes256-gcm96; a token that may not read keys skips this), and
version 1 of every configured keyring that has no version. With kms.local it creates the
master key file if missing. Running it again changes nothing.`,
			Args: cobra.NoArgs,
			RunE: g.keysRun(keysInit),
		},
		&cobra.Command{
			Use:   "rotate NAME",
			Short: "Add a new data key version to keyring NAME; it encrypts from then on",
			Long: `Adds version newest+1 to keyring NAME and announces it (NOTIFY pgcloak_keys). Every running
pgcloak instance encrypts new values with it within key_refresh (usually at once). Values
already stored stay under their versions, which keep decrypting, until re-encrypted
(pgcloak migrate rotate). To rotate the KEK instead, rotate the Transit key in Vault and run
pgcloak keys rewrap.`,
			Args: cobra.ExactArgs(1),
			RunE: g.keysRun(keysRotate),
		},
		&cobra.Command{
			Use:   "list",
			Short: "List the keyrings and their versions (created, KEK, active)",
			Args:  cobra.NoArgs,
			RunE:  g.keysRun(keysList),
		},
		&cobra.Command{
			Use:   "rewrap",
			Short: "Re-wrap every stored data key with the newest version of its Transit key",
			Long: `After an operator rotated a keyring's Transit key in Vault (vault write -f
transit/keys/NAME/rotate), rewrap re-encrypts every stored data key under the newest Transit
key version with Transit's rewrap endpoint: the data keys never leave Vault in the clear, they
stay the same, and no row of user data is touched. All rows change in one transaction or none
does. A keyring whose transit_key changed in the config is moved to the new Transit key
(unwrapped and wrapped again).

Afterwards no stored key needs the older Transit key versions, so an operator may raise
min_decryption_version in Vault (vault write transit/keys/NAME/config
min_decryption_version=N) to retire them; rewrap prints N for each key.`,
			Args: cobra.NoArgs,
			RunE: g.keysRun(keysRewrap),
		},
	)
	keys.AddCommand(subjectKeysCommands(g)...)
	return keys
}

// RunKeys runs `pgcloak keys ARGS…` in process and returns the exit code:
// 0, 1 on failure, 2 for a configuration file with mistakes. args are what
// follows "keys", flags included (--config FILE, --log-level LEVEL).
func RunKeys(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := &cobra.Command{Use: "pgcloak", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("PGCLOAK_CONFIG"), "configuration file (env PGCLOAK_CONFIG)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(keysCommand(g))
	root.SetArgs(append([]string{"keys"}, args...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "pgcloak:", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	return 0
}

// keysEnv is what every keys command works with.
type keysEnv struct {
	cfg   *config.Config
	out   io.Writer
	errw  io.Writer
	log   *zap.Logger
	store *keystore.Store
}

func (g *globals) keysRun(run func(ctx context.Context, e *keysEnv, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		cfg, err := g.loadConfig()
		if err != nil {
			return err
		}
		if len(cfg.Keys) == 0 {
			return fmt.Errorf("%s names no keyring; add e.g. keys: {pii: {transit_key: pgcloak-pii}} together with kms and admin_dsn", g.configPath)
		}
		ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, keysTimeout)
		defer cancel()
		e := &keysEnv{cfg: cfg, out: c.OutOrStdout(), errw: c.ErrOrStderr()}
		if e.log, err = cliLogger(g.logLevel, e.errw); err != nil {
			return err
		}
		if e.store, err = keystore.OpenStore(ctx, cfg.AdminDSN); err != nil {
			return err
		}
		defer e.store.Close()
		return run(ctx, e, args)
	}
}

// cliLogger writes human-readable lines to w.
func cliLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	ec := zap.NewDevelopmentEncoderConfig()
	ec.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.AddSync(w), lvl)), nil
}

// kmsConn is the configured KMS with what the commands need beside
// crypto.KMS.
type kmsConn struct {
	crypto.KMS
	vault *vault.KMS // nil with kms.local
}

// kek is the KMS key name that wraps keyring's new versions.
func (k *kmsConn) kek(cfg *config.Config, keyring string) string {
	if k.vault != nil {
		return cfg.Keys[keyring].TransitKey
	}
	return keystore.LocalKEK
}

func (k *kmsConn) close() {
	if k.vault != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = k.vault.Close(ctx) // revoking a token we leave behind is best effort
	}
}

// openKMS connects to the configured KMS. The local KMS logs its warning.
func openKMS(ctx context.Context, cfg *config.Config, log *zap.Logger) (*kmsConn, error) {
	switch {
	case cfg.KMS != nil && cfg.KMS.Vault != nil:
		v := cfg.KMS.Vault
		k, err := vault.New(ctx, vault.Config{
			Address:      v.Address,
			TransitMount: v.TransitMount,
			Namespace:    v.Namespace,
			CACert:       v.CACert,
			Auth: vault.Auth{
				Method:       v.Auth.Method,
				TokenFile:    v.Auth.TokenFile,
				RoleID:       v.Auth.RoleID,
				SecretIDFile: v.Auth.SecretIDFile,
				Role:         v.Auth.Role,
				JWTFile:      v.Auth.JWTFile,
				Mount:        v.Auth.Mount,
			},
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		return &kmsConn{KMS: k, vault: k}, nil
	case cfg.KMS != nil && cfg.KMS.Local != nil:
		log.Warn(localkms.Warning, zap.String("key_file", cfg.KMS.Local.KeyFile))
		k, err := localkms.Open(cfg.KMS.Local.KeyFile)
		if err != nil {
			return nil, err
		}
		return &kmsConn{KMS: k}, nil
	}
	return nil, errors.New("no kms configured; add kms: {vault: …} to the config")
}

// OpenKeyrings loads the data keys of every configured keyring for serve and
// keeps them current (crypto/keystore). It fails, saying why, when the
// database, the KMS or a keyring's keys are not available: serve must then
// not be ready. With no keys configured it returns a nil loader. closeFn
// zeroes the keys and closes the connections.
func OpenKeyrings(ctx context.Context, cfg *config.Config, log *zap.Logger) (l *keystore.Loader, closeFn func(), err error) {
	return openKeyrings(ctx, cfg, log, nil)
}

// openKeyrings is OpenKeyrings with the KMS requests counted and timed in m
// (nil: not).
func openKeyrings(ctx context.Context, cfg *config.Config, log *zap.Logger, m *opsMetrics) (l *keystore.Loader, closeFn func(), err error) {
	if len(cfg.Keys) == 0 {
		return nil, func() {}, nil
	}
	kms, err := openKMS(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var observed crypto.KMS = kms
	if m != nil {
		observed = observedKMS{KMS: kms, m: m}
	}
	store, err := keystore.OpenStore(ctx, cfg.AdminDSN)
	if err != nil {
		kms.close()
		return nil, nil, err
	}
	l, err = keystore.Load(ctx, keystore.Options{
		Store:    store,
		KMS:      observed,
		Keyrings: sortedKeys(cfg.Keys),
		Refresh:  cfg.KeyRefresh,
		DSN:      cfg.AdminDSN,
		Logger:   log,
		Shredded: cfg.SubjectKeyrings(),
	})
	if err != nil {
		store.Close()
		kms.close()
		return nil, nil, err
	}
	return l, func() { l.Close(); store.Close(); kms.close() }, nil
}

func sortedKeys(m map[string]config.Key) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func keysInit(ctx context.Context, e *keysEnv, _ []string) error {
	if l := e.cfg.KMS.Local; l != nil {
		if _, err := os.Stat(l.KeyFile); errors.Is(err, fs.ErrNotExist) {
			if err := localkms.GenerateKeyFile(l.KeyFile); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "created master key file %s (development only: back it up, or lose every value it protects)\n", l.KeyFile)
		}
	}
	kms, err := openKMS(ctx, e.cfg, e.log)
	if err != nil {
		return err
	}
	defer kms.close()
	names := sortedKeys(e.cfg.Keys)
	if kms.vault != nil {
		done := map[string]bool{}
		tks := make([]string, 0, len(names)+1)
		for _, n := range names {
			tks = append(tks, e.cfg.Keys[n].TransitKey)
		}
		if e.cfg.Audit != nil {
			tks = append(tks, e.cfg.Audit.TransitKey) // wraps the audit log's HMAC keys
		}
		for _, tk := range tks {
			if done[tk] {
				continue
			}
			done[tk] = true
			created, err := kms.vault.EnsureKey(ctx, tk)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(e.out, "created Transit key %s (aes256-gcm96) at %s\n", tk, kms.vault.Address())
			}
		}
	}
	created, err := e.store.Init(ctx)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(e.out, "created table pgcloak.keys in %s\n", e.store)
	}
	for _, n := range names {
		kek := kms.kek(e.cfg, n)
		v, made, err := e.store.InitKeyring(ctx, kms, n, kek)
		if err != nil {
			return err
		}
		if made {
			fmt.Fprintf(e.out, "keyring %s: created version %d, wrapped by %s\n", n, v, kekLabel(kek))
		} else {
			fmt.Fprintf(e.out, "keyring %s: has versions up to %d; unchanged\n", n, v)
		}
	}
	if len(e.cfg.Subjects) > 0 {
		return initSubjects(ctx, e)
	}
	return nil
}

func kekLabel(kek string) string {
	if kek == keystore.LocalKEK {
		return "the local master key"
	}
	return "Transit key " + kek
}

func keysRotate(ctx context.Context, e *keysEnv, args []string) error {
	name := args[0]
	if _, ok := e.cfg.Keys[name]; !ok {
		return fmt.Errorf("no keyring %q in the config; configured: %s", name, strings.Join(sortedKeys(e.cfg.Keys), ", "))
	}
	kms, err := openKMS(ctx, e.cfg, e.log)
	if err != nil {
		return err
	}
	defer kms.close()
	kek := kms.kek(e.cfg, name)
	v, err := e.store.Rotate(ctx, kms, name, kek)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "keyring %s: created version %d, wrapped by %s.\n", name, v, kekLabel(kek))
	fmt.Fprintf(e.out, "Running pgcloak instances encrypt new values with it within key_refresh (%s), usually at once.\n", e.cfg.KeyRefresh)
	fmt.Fprintf(e.out, "Stored values stay under their versions, which keep decrypting, until re-encrypted (pgcloak migrate rotate).\n")
	return nil
}

func keysList(ctx context.Context, e *keysEnv, _ []string) error {
	recs, err := e.store.Records(ctx)
	if err != nil {
		return err
	}
	newest := map[string]uint32{}
	for _, r := range recs {
		newest[r.Keyring] = max(newest[r.Keyring], r.Version)
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEYRING\tVERSION\tCREATED\tKEK\tACTIVE")
	for _, r := range recs {
		active := ""
		if r.Version == newest[r.Keyring] {
			active = "yes"
		}
		kek := r.KEK
		if v := vault.KEKVersion(r.Wrapped); v != "" {
			kek += " " + v
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Keyring, r.Version, r.CreatedAt.UTC().Format(time.RFC3339), kek, active)
	}
	for _, n := range sortedKeys(e.cfg.Keys) {
		if newest[n] == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tno version: run pgcloak keys init\n", n)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for n := range newest {
		if _, ok := e.cfg.Keys[n]; !ok {
			fmt.Fprintf(e.out, "note: keyring %s is in pgcloak.keys but not in the config\n", n)
		}
	}
	return nil
}

func keysRewrap(ctx context.Context, e *keysEnv, _ []string) error {
	kms, err := openKMS(ctx, e.cfg, e.log)
	if err != nil {
		return err
	}
	defer kms.close()
	keks := map[string]string{}
	for n := range e.cfg.Keys {
		keks[n] = kms.kek(e.cfg, n)
	}
	res, err := e.store.Rewrap(ctx, kms, keks)
	if err != nil {
		return err
	}
	rings := map[string]bool{}
	newest := map[string]string{} // Transit key → its version that wraps every row now
	for _, r := range res {
		rings[r.Keyring] = true
		before, after := vault.KEKVersion(r.Before), vault.KEKVersion(r.After)
		switch {
		case r.OldKEK != r.KEK:
			fmt.Fprintf(e.out, "keyring %s version %d: moved from %s to %s\n", r.Keyring, r.Version, kekLabel(r.OldKEK), kekLabel(r.KEK))
		case before != "":
			fmt.Fprintf(e.out, "keyring %s version %d: Transit key %s %s -> %s\n", r.Keyring, r.Version, r.KEK, before, after)
		default:
			fmt.Fprintf(e.out, "keyring %s version %d: rewrapped by %s\n", r.Keyring, r.Version, kekLabel(r.KEK))
		}
		if after != "" && after != "v1" {
			newest[r.KEK] = after
		}
	}
	fmt.Fprintf(e.out, "rewrapped %d data keys of %d keyrings in one transaction; no row of user data was touched\n", len(res), len(rings))
	tks := make([]string, 0, len(newest))
	for tk := range newest {
		tks = append(tks, tk)
	}
	slices.Sort(tks)
	for _, tk := range tks {
		fmt.Fprintf(e.out, "Transit key %s: every data key is wrapped by %s; older versions may now be retired:\n"+
			"  vault write %s/keys/%s/config min_decryption_version=%s\n",
			tk, newest[tk], e.cfg.KMS.Vault.TransitMount, tk, strings.TrimPrefix(newest[tk], "v"))
	}
	return nil
}
