package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// localAuditKEK is the key name the local KMS wraps the audit HMAC key for
// (its associated data): a key wrapped for a keyring does not unwrap as one.
const localAuditKEK = "pgcloak-audit"

// auditKEK is the KMS key that wraps the audit log's HMAC key.
func auditKEK(cfg *config.Config) string {
	if cfg.KMS != nil && cfg.KMS.Vault != nil {
		return cfg.Audit.TransitKey
	}
	return localAuditKEK
}

// openAudit draws the audit log's HMAC key, wraps it with the KMS and opens
// the log. lost counts records dropped.
func openAudit(ctx context.Context, cfg *config.Config, log *zap.Logger, lost func(int)) (*audit.Writer, error) {
	a := cfg.Audit
	kms, err := openKMS(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer kms.close()
	key := audit.NewKey()
	kek := auditKEK(cfg)
	wrapped, err := kms.Wrap(ctx, kek, key)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("audit: wrap the log's HMAC key with %s (pgcloak keys init creates the Transit key): %w", kek, err)
	}
	o := audit.Options{File: a.File, Buffer: a.Buffer, Continue: a.OnFailure == config.AuditContinue, RotateSize: int64(a.RotateSize),
		Key: key, Wrapped: wrapped, KEK: kek, Log: log, Lost: lost}
	if a.Stdout {
		o.Stdout = os.Stdout
	}
	return audit.Open(o)
}

// guardProtection gives the protector the access policy and the audit log
// (opened now, retried with backoff while the KMS or the file cannot be
// used). It returns the function that closes the log, or nil when ctx
// ended first.
func guardProtection(ctx context.Context, cfg *config.Config, log *zap.Logger, prot *engine.Protector) func() {
	policy, err := access.New(cfg)
	if err != nil {
		log.Error("access rules", zap.Error(err)) // config.Parse checked them: not reached
		return nil
	}
	if policy.Open() {
		log.Warn("the config has no access section: every role that connects reads and writes every protected column in plaintext; " +
			"add access: {default: deny, roles: {app: {read: plaintext, write: true}}} to give each role only what it needs (see pgcloak config example)")
	}
	g := engine.Guard{Policy: policy}
	if cfg.Audit == nil {
		prot.SetGuard(g)
		return func() {}
	}
	if !retryUntilReady(ctx, log, prot, "", func() error {
		var err error
		g.Audit, err = openAudit(ctx, cfg, log, prot.CountAuditLost)
		return err
	}) {
		return nil
	}
	prot.SetGuard(g)
	log.Info("audit log open", zap.String("file", cfg.Audit.File), zap.String("on_failure", cfg.Audit.OnFailure))
	return func() {
		if err := g.Audit.Close(); err != nil {
			log.Error("closing the audit log", zap.Error(err))
		}
	}
}

// retryUntilReady calls try until it succeeds, with backoff from 1 s to
// 30 s, keeping prot not ready (with prefix and the error as the reason)
// meanwhile. It returns false when ctx ends first.
func retryUntilReady(ctx context.Context, log *zap.Logger, prot *engine.Protector, prefix string, try func() error) bool {
	delay := time.Second
	for {
		err := try()
		if err == nil {
			return true
		}
		prot.SetNotReady(prefix + err.Error())
		log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// setup loads the config and makes the logger of a command that reports
// to a person.
func (g *globals) setup(c *cobra.Command) (*config.Config, *zap.Logger, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	log, err := cliLogger(g.logLevel, c.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

func auditCommand(g *globals) *cobra.Command {
	var o audit.VerifyOptions
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the audit log of decryptions and denials",
	}
	verify := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check that an audit log is whole: no record removed, reordered, changed or forged",
		Long: `Checks the hash chain and the HMAC of every record of the audit log in FILE... (the current file
and its rotated ones, in any order), unwrapping the HMAC keys with the config's KMS. It prints a
summary and exits 0 when the log is whole; otherwise it prints FILE:LINE of the first broken link
and exits 1 (2 for a config file with mistakes).

A log that pgcloak is still writing has no close record yet: pass --live. A restart of pgcloak
after a crash cannot be told apart from records removed at the end of the run before it, and is
reported as broken unless --allow-unclean is given.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, files []string) error {
			cfg, log, err := g.setup(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 5*time.Minute)
			defer cancel()
			return runAuditVerify(ctx, cfg, log, files, o, c.OutOrStdout())
		},
	}
	verify.Flags().BoolVar(&o.Live, "live", false, "the last file is being written: accept a log without its close record")
	verify.Flags().BoolVar(&o.AllowUnclean, "allow-unclean", false, "accept restarts after pgcloak stopped without closing the log (a crash), as warnings")
	cmd.AddCommand(verify)
	return cmd
}

func runAuditVerify(ctx context.Context, cfg *config.Config, log *zap.Logger, files []string, o audit.VerifyOptions, out io.Writer) error {
	kms, err := openKMS(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer kms.close()
	rep, err := audit.Verify(files, func(kek string, wrapped []byte) ([]byte, error) {
		return kms.Unwrap(ctx, kek, wrapped)
	}, o)
	var b *audit.Broken
	if errors.As(err, &b) {
		fmt.Fprintf(out, "BROKEN %s\n", b)
		return fmt.Errorf("the audit log is not whole")
	}
	if err != nil {
		return err
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(out, "warning", w)
	}
	end := "ends with its close record"
	if !rep.Closed {
		end = "is still open (--live)"
	}
	fmt.Fprintf(out, "OK %d records (seq %d to %d) in %d files, %d keys (%s); the log %s\n",
		rep.Records, rep.First, rep.Last, rep.Files, len(rep.Keys), strings.Join(rep.Keys, ", "), end)
	return nil
}

// RunAudit runs `pgcloak audit ARGS…` in process and returns the exit code.
func RunAudit(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(auditCommand, "audit", args, stdout, stderr)
}
