// Package retention applies the config's retention: rules: rows older than
// their keep period are deleted (action: delete), or their subject is
// forgotten once none of its rows in the table is newer (action: forget:
// the subject's key is destroyed, as pgcloak forget does, so its protected
// values are erased in every table, the WAL and, after the shred window,
// the backups).
//
// # Batches, concurrency, resumption
//
// The cut-off (now() - keep) is fixed when a run starts. Each batch is one
// transaction:
//
//	delete: DELETE FROM t WHERE ctid = ANY(ARRAY(SELECT ctid FROM t WHERE col < cutoff LIMIT n FOR UPDATE))
//	forget: up to n subjects whose rows are all older than the cut-off and whose key is live;
//	        for each, its rows are locked (FOR UPDATE), the check is made again, and
//	        pgcloak.forget(table, subject, 'retention') runs
//
// A row that an application updates meanwhile is locked, then checked again
// on its new version: a row made newer than the cut-off stays, as does the
// subject of a row made newer, and rows written meanwhile are newer than
// the cut-off. Nothing is recorded between runs: what is left to do is what
// the query finds, so a run stopped anywhere (Ctrl-C, kill -9, a lost
// connection, --max-batches) is resumed by the next one, and a run that
// finds nothing changes nothing. A batch that meets a deadlock or a
// serialization failure is tried again.
package retention

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto/subject"
)

// Options configures Run.
type Options struct {
	// Tables limits the run to these tables (as written in retention:);
	// nil: every rule.
	Tables []string
	// DryRun counts what would be done and changes nothing.
	DryRun bool
	// Batch is the rows (delete) or subjects (forget) per transaction
	// (default 1000).
	Batch int
	// MaxBatches stops a rule after this many batches (0: no limit); the
	// next run goes on from there.
	MaxBatches int
	// Progress, if set, is called after each batch.
	Progress func(Result)
}

// Result is what a run did (or, dry, would do) to one table.
type Result struct {
	Rule   string // the table as written in retention:
	Table  string // schema.table
	Action string // forget or delete
	Cutoff time.Time
	// Done is the rows deleted, or the subjects forgotten (dry run: that
	// would be). Batches counts the transactions.
	Done    int64
	Batches int
	// More: the run stopped at MaxBatches with work left.
	More bool
}

// lockID is the session advisory lock a retention run holds, so that
// instances and cron jobs that start at once run one at a time.
const lockID = 0x7067636c6f616b + 2

// Run applies cfg's retention rules through conn (admin_dsn), one table
// after another, in the order of their names.
func Run(ctx context.Context, conn *pgx.Conn, cfg *config.Config, o Options) ([]Result, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	names, err := chosen(cfg, o.Tables)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockID)); err != nil {
		return nil, err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(lockID)) //nolint:errcheck // the session ends anyway
	var out []Result
	for _, name := range names {
		r, err := runRule(ctx, conn, cfg, name, o)
		if err != nil {
			return out, fmt.Errorf("retention.%s: %w", name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// chosen returns the rules to run, sorted.
func chosen(cfg *config.Config, tables []string) ([]string, error) {
	var names []string
	for n := range cfg.Retention {
		names = append(names, n)
	}
	if len(tables) > 0 {
		var keep []string
		for _, t := range tables {
			if _, ok := cfg.Retention[t]; !ok {
				return nil, fmt.Errorf("%s has no rule under retention: in the config", t)
			}
			keep = append(keep, t)
		}
		names = keep
	}
	if len(names) == 0 {
		return nil, errors.New("the config has no retention: rules")
	}
	slices.Sort(names)
	return names, nil
}

// rule is one retention rule resolved against the catalog.
type rule struct {
	name             string // as in the config
	rel              string // quoted schema.table
	col              string // quoted column
	action           string
	subj             string // quoted subject column (forget)
	subjType         string // its type, as format_type prints it
	scope            string
	cutoff           time.Time
	display          string
	schema, relation string
}

func runRule(ctx context.Context, conn *pgx.Conn, cfg *config.Config, name string, o Options) (Result, error) {
	rr, err := resolve(ctx, conn, cfg, name)
	if err != nil {
		return Result{}, err
	}
	res := Result{Rule: name, Table: rr.display, Action: rr.action, Cutoff: rr.cutoff}
	if o.DryRun {
		q := `SELECT count(*) FROM ` + rr.rel + ` WHERE ` + rr.col + ` < $1`
		args := []any{rr.cutoff}
		if rr.action == config.RetentionForget {
			q, args = forgettable(rr, false), []any{rr.cutoff, rr.scope}
			q = `SELECT count(*) FROM (` + q + `) f`
		}
		err := conn.QueryRow(ctx, q, args...).Scan(&res.Done)
		return res, err
	}
	for {
		if o.MaxBatches > 0 && res.Batches == o.MaxBatches {
			res.More = true
			return res, nil
		}
		var n, done int64
		err := retry(ctx, func() error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				var err error
				if rr.action == config.RetentionDelete {
					n, err = deleteBatch(ctx, tx, rr, o.Batch)
					done = n
				} else {
					n, done, err = forgetBatch(ctx, tx, rr, o.Batch)
				}
				return err
			})
		})
		if err != nil {
			return res, err
		}
		res.Done += done
		res.Batches++
		if o.Progress != nil {
			o.Progress(res)
		}
		if n == 0 {
			return res, nil
		}
	}
}

// resolve checks the rule's table and column and fixes its cut-off.
func resolve(ctx context.Context, conn *pgx.Conn, cfg *config.Config, name string) (*rule, error) {
	schema, table, err := config.SplitTable(name)
	if err != nil {
		return nil, err
	}
	r := cfg.Retention[name]
	interval, err := config.KeepInterval(r.Keep)
	if err != nil {
		return nil, err
	}
	rr := &rule{name: name, action: r.Action, schema: schema, relation: table,
		rel: pgx.Identifier{schema, table}.Sanitize(), col: pgx.Identifier{r.Column}.Sanitize(), display: subject.ScopeName(schema, table)}
	var typ string
	err = conn.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, rr.rel, r.Column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s has no column %s (or the table does not exist)", rr.display, r.Column)
	}
	if err != nil {
		return nil, err
	}
	switch typ {
	case "date", "timestamp without time zone", "timestamp with time zone":
	default:
		return nil, fmt.Errorf("column %s is %s; a row's age is counted from a date or timestamp column", r.Column, typ)
	}
	if err := conn.QueryRow(ctx, `SELECT now() - $1::interval`, interval).Scan(&rr.cutoff); err != nil {
		return nil, err
	}
	if r.Action == config.RetentionForget {
		s := cfg.Subjects[name]
		rr.subj = pgx.Identifier{s.Column}.Sanitize()
		err := conn.QueryRow(ctx, `SELECT scope, subject_type FROM pgcloak.subject_tables WHERE schema_name = $1 AND table_name = $2`, schema, table).Scan(&rr.scope, &rr.subjType)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%s is not registered in pgcloak.subject_tables; run pgcloak keys init", rr.display)
		}
		if err != nil {
			return nil, err
		}
	}
	return rr, nil
}

// deleteBatch deletes up to n rows older than the cut-off.
func deleteBatch(ctx context.Context, tx pgx.Tx, rr *rule, n int) (int64, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM `+rr.rel+` WHERE ctid = ANY(ARRAY(SELECT ctid FROM `+rr.rel+` WHERE `+rr.col+` < $1 LIMIT $2 FOR UPDATE))`,
		rr.cutoff, n)
	return tag.RowsAffected(), err
}

// forgettable is the query of the subjects that have a row older than the
// cut-off ($1), none newer, and a live key (scope $2); with limit, $3
// bounds them.
func forgettable(rr *rule, limit bool) string {
	q := `SELECT DISTINCT o.` + rr.subj + `::text FROM ` + rr.rel + ` o
		WHERE o.` + rr.col + ` < $1 AND o.` + rr.subj + ` IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM ` + rr.rel + ` n WHERE n.` + rr.subj + ` = o.` + rr.subj + ` AND NOT n.` + rr.col + ` < $1)
		AND EXISTS (SELECT 1 FROM pgcloak.subject_keys k WHERE k.scope = $2 AND k.subject_hash = pgcloak.subject_hash($2, o.` + rr.subj + `::text))`
	if limit {
		q += ` LIMIT $3`
	}
	return q
}

// forgetBatch forgets up to n subjects past the cut-off. Each subject's rows
// are locked and checked again first: one an application made newer
// meanwhile keeps its subject. It returns the subjects it looked at (0:
// none is left) and those it forgot.
func forgetBatch(ctx context.Context, tx pgx.Tx, rr *rule, n int) (looked, forgot int64, err error) {
	rows, err := tx.Query(ctx, forgettable(rr, true), rr.cutoff, rr.scope, n)
	if err != nil {
		return 0, 0, err
	}
	subjects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, 0, err
	}
	for _, s := range subjects {
		var still bool
		err := tx.QueryRow(ctx, `SELECT coalesce(bool_and(c < $2), false) FROM (SELECT `+rr.col+` AS c FROM `+rr.rel+` WHERE `+rr.subj+` = $1::`+rr.subjType+` FOR UPDATE) r`,
			s, rr.cutoff).Scan(&still)
		if err != nil {
			return 0, forgot, err
		}
		if !still {
			continue
		}
		var had bool
		if err := tx.QueryRow(ctx, `SELECT pgcloak.forget($1::regclass, $2, 'retention')`, rr.rel, s).Scan(&had); err != nil {
			return 0, forgot, err
		}
		if had {
			forgot++
		}
	}
	return int64(len(subjects)), forgot, nil
}

// retry runs fn again after a deadlock or a serialization failure.
func retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		var pe *pgconn.PgError
		if err == nil || attempt == 10 || !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}
