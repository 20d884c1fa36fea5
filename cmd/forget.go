package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/crypto/subject"
)

func forgetCommand(g *globals) *cobra.Command {
	var table, subj, reason string
	c := &cobra.Command{
		Use:   "forget --table T --subject ID",
		Short: "Erase one subject: destroy the key of its protected values (GDPR Art. 17)",
		Long: `Destroys the key under which the protected values of one subject (a row of a table named
under subjects:, and the rows of the tables whose subjects refer to it) are encrypted. From then
on every pgcloak instance reads those values as NULL (or as an error, with forgotten_reads:
error): at once through NOTIFY pgcloak_subjects, at the latest within key_refresh. The rows
stay, with their plain columns; delete them too if they must go. A later write for the subject
makes a new key.

The values stay in the table files, the WAL, the replicas and the backups, but without the key
nothing can read them. Backups taken before the forget still hold the key, wrapped by the
subject keyring's version of that time: they lose it at the next shred rotation (every
shred_window; pgcloak keys status says when).

Applications can do the same in SQL, in their own transaction:
  SELECT pgcloak.forget('public.customers', '42');   -- true if the subject had a key
(GRANT USAGE ON SCHEMA pgcloak and EXECUTE ON FUNCTION pgcloak.forget(regclass, text, text)
to their role first.)`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if table == "" || subj == "" {
				return fmt.Errorf("--table and --subject are required")
			}
			if len(cfg.Subjects) == 0 {
				return fmt.Errorf("the config names no table under subjects:, so no value is under a subject key")
			}
			ctx, cancel := context.WithTimeout(c.Context(), keysTimeout)
			defer cancel()
			conn, err := pgx.Connect(ctx, cfg.AdminDSN)
			if err != nil {
				return fmt.Errorf("admin_dsn: %w", err)
			}
			defer conn.Close(context.Background())
			f, err := subject.Forget(ctx, conn, table, subj, reason)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			if !f.Had {
				fmt.Fprintf(w, "subject %s of %s has no key (never written through pgcloak, or forgotten already): nothing to forget\n", subj, f.Scope)
				return nil
			}
			fmt.Fprintf(w, "forgot subject %s of %s: its protected values in %s are erased\n", subj, f.Scope, strings.Join(f.Tables, ", "))
			fmt.Fprintf(w, "every pgcloak instance reads them as %s within key_refresh (%s), usually at once\n", forgottenReads(cfg.Subjects), cfg.KeyRefresh)
			return printShredDue(ctx, w, conn, cfg)
		},
	}
	c.Flags().StringVar(&table, "table", "", "a table with subjects (schema.table)")
	c.Flags().StringVar(&subj, "subject", "", "the subject, as its column holds it (e.g. the customer id)")
	c.Flags().StringVar(&reason, "reason", "forget", "recorded in pgcloak.forgotten (no subject is named there)")
	return c
}

// RunForget runs `pgcloak forget ARGS…` in process and returns the exit code.
func RunForget(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(forgetCommand, "forget", args, stdout, stderr)
}
