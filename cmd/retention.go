package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/retention"
)

func retentionCommand(g *globals) *cobra.Command {
	var o retention.Options
	run := &cobra.Command{
		Use:   "run [--table T]… [--dry-run]",
		Short: "Apply the retention: rules: forget or delete what is past its time",
		Long: `For each rule of the config's retention: section (or the --table ones), with the cut-off
now() - keep fixed when the run starts:

  action: delete  deletes the rows whose column is older than the cut-off;
  action: forget  forgets (as pgcloak forget does) each subject that has no row in the table
                  newer than the cut-off: its protected values are erased in every table of
                  its subjects, the rows stay.

In batches of --batch rows or subjects, one transaction each, with row locks: a row an
application makes newer meanwhile stays, and so does its subject. A run stopped anywhere is
resumed by the next one (what is left is what the rules still find). --dry-run counts and
changes nothing. pgcloak serve runs the rules itself every retention_schedule when it is set.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt)
			defer stop()
			conn, err := pgx.Connect(ctx, cfg.AdminDSN)
			if err != nil {
				return fmt.Errorf("admin_dsn: %w", err)
			}
			defer conn.Close(context.Background())
			res, err := retention.Run(ctx, conn, cfg, o)
			printRetention(c.OutOrStdout(), cfg, res, o.DryRun)
			return err
		},
	}
	run.Flags().StringSliceVar(&o.Tables, "table", nil, "only this table's rule (schema.table as in retention:); repeat for more")
	run.Flags().BoolVar(&o.DryRun, "dry-run", false, "count what would be forgotten or deleted; change nothing")
	run.Flags().IntVar(&o.Batch, "batch", 1000, "rows (delete) or subjects (forget) per transaction")
	run.Flags().IntVar(&o.MaxBatches, "max-batches", 0, "stop each rule after this many batches (0: no limit); the next run goes on")
	r := &cobra.Command{Use: "retention", Short: "Apply the retention: rules (forget or delete rows past their time)"}
	r.AddCommand(run)
	return r
}

// RunRetention runs `pgcloak retention ARGS…` in process and returns the
// exit code.
func RunRetention(args []string, stdout, stderr io.Writer) int {
	return runSubcommand(retentionCommand, "retention", args, stdout, stderr)
}

func printRetention(w io.Writer, cfg *config.Config, res []retention.Result, dry bool) {
	for _, r := range res {
		rule := cfg.Retention[r.Rule]
		what, unit := "deleted", "rows"
		if r.Action == config.RetentionForget {
			what, unit = "forgot", "subjects"
		}
		if dry {
			what = map[string]string{"deleted": "would delete", "forgot": "would forget"}[what]
		}
		fmt.Fprintf(w, "%s: %s %d %s with %s before %s (keep %s)", r.Table, what, r.Done, unit, rule.Column, r.Cutoff.UTC().Format(time.RFC3339), rule.Keep)
		if !dry {
			fmt.Fprintf(w, " in %d batch(es)", r.Batches)
		}
		if r.More {
			fmt.Fprint(w, "; stopped at --max-batches: run again to go on")
		}
		fmt.Fprintln(w)
		if r.Action == config.RetentionForget && r.Done > 0 && !dry {
			fmt.Fprintf(w, "  every pgcloak instance reads their values as NULL within key_refresh (%s); backups lose them at the next shred rotation\n", cfg.KeyRefresh)
		}
	}
}

// runRetentionSchedule makes serve apply the retention rules every
// retention_schedule until ctx ends. Instances that start a run at once
// take turns (an advisory lock); the later ones find nothing left.
func runRetentionSchedule(ctx context.Context, cfg *config.Config, log *zap.Logger) {
	for sleep(ctx, cfg.RetentionSchedule) {
		conn, err := pgx.Connect(ctx, cfg.AdminDSN)
		if err != nil {
			log.Warn("retention: cannot connect; retrying at the next run", zap.Error(err))
			continue
		}
		res, err := retention.Run(ctx, conn, cfg, retention.Options{})
		conn.Close(context.Background())
		for _, r := range res {
			if r.Done > 0 {
				log.Info("retention applied", zap.String("table", r.Table), zap.String("action", r.Action), zap.Int64("done", r.Done), zap.Time("cutoff", r.Cutoff))
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("retention run failed; the next one goes on from where it stopped", zap.Error(err))
		}
	}
}
