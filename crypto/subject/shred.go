package subject

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/vault"
)

// A shred rotation makes backups lose the subject keys that were forgotten
// before it. A backup holds pgcloak.subject_keys (each key wrapped by a
// version of the subject keyring) and pgcloak.keys (each version wrapped by
// a version of the keyring's Transit key). A rotation
//
//  1. rotates the Transit key (version n+1) and adds keyring version m+1,
//     wrapped by it;
//  2. rewraps every live subject key under m+1, in batches;
//  3. deletes versions ≤ m from pgcloak.keys, rewrapping in the same
//     transaction the keys that instances made meanwhile under them;
//  4. retires the Transit versions ≤ n: min_decryption_version and
//     min_encryption_version n+1, then trim.
//
// After step 4 nothing can unwrap version m, so no backup taken before the
// rotation can unwrap any subject key; a key forgotten before it is gone
// everywhere. Live subjects keep their keys (rewrapped, the same bytes), so
// running instances and their caches are not disturbed. Each step can be
// run again: a rotation that stopped half-way is finished by the next run.

// TransitAdmin is what a shred rotation needs of Vault beyond wrapping;
// crypto/vault's KMS has it. The local KMS has no versions to retire: a
// backup then keeps every subject key it holds.
type TransitAdmin interface {
	Versions(ctx context.Context, keyName string) (vault.KeyVersions, error)
	RotateKey(ctx context.Context, keyName string) (int, error)
	Retire(ctx context.Context, keyName string, min int) error
}

// shredLockID is the session-level advisory lock held by a shred rotation,
// so that instances and cron jobs that try at once rotate once.
const shredLockID = keystore.LockID + 1

// ShredOptions configures Shred.
type ShredOptions struct {
	// Conn is the admin connection (admin_dsn); Store the key store on the
	// same database.
	Conn  *pgx.Conn
	Store *keystore.Store
	// KMS unwraps the keyring's versions and wraps the new one; Transit,
	// when not nil, retires the old Transit versions.
	KMS     crypto.KMS
	Transit TransitAdmin
	// Keyring is the subject keyring, KEK its Transit key (or
	// keystore.LocalKEK).
	Keyring, KEK string
	// Window is shred_window. A rotation is due when the keyring's newest
	// version is Window-Early old (Early is how often a scheduler looks, so
	// that no subject outlives the window); Force rotates anyway.
	Window, Early time.Duration
	Force         bool
	// Batch is the number of subject keys rewrapped per transaction
	// (default 1000).
	Batch int
	Log   *zap.Logger
}

// ShredResult is what Shred did.
type ShredResult struct {
	// Rotated: a new version was made (false: not due, or a rotation that
	// had stopped half-way was finished).
	Rotated bool
	// Version is the keyring version that wraps every subject key now;
	// Destroyed the versions deleted from pgcloak.keys.
	Version   uint32
	Destroyed []uint32
	Rewrapped int64
	// TransitMin is the oldest Transit version left (0: local KMS).
	TransitMin int
	// Next is when the next rotation is due.
	Next time.Time
}

// Shred runs a shred rotation of o.Keyring if one is due (or forced), and
// finishes one that stopped half-way.
func Shred(ctx context.Context, o ShredOptions) (ShredResult, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if _, err := o.Conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(shredLockID)); err != nil {
		return ShredResult{}, err
	}
	defer o.Conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(shredLockID)) //nolint:errcheck // the session ends anyway
	if err := Init(ctx, o.Conn); err != nil {
		return ShredResult{}, err
	}
	started := time.Now()
	recs, err := o.Store.Records(ctx, o.Keyring)
	if err != nil {
		return ShredResult{}, err
	}
	if len(recs) == 0 {
		return ShredResult{}, fmt.Errorf("keyring %q has no version; run pgcloak keys init", o.Keyring)
	}
	var res ShredResult
	newest := recs[len(recs)-1]
	due := !started.Add(o.Early).Before(newest.CreatedAt.Add(o.Window))
	if len(recs) == 1 && (due || o.Force) {
		if o.Transit != nil {
			if _, err := o.Transit.RotateKey(ctx, o.KEK); err != nil {
				return res, err
			}
		}
		v, err := o.Store.Rotate(ctx, o.KMS, o.Keyring, o.KEK)
		if err != nil {
			return res, err
		}
		o.Log.Info("shred rotation: new subject keyring version", zap.String("keyring", o.Keyring), zap.Uint32("version", v))
		res.Rotated = true
		if recs, err = o.Store.Records(ctx, o.Keyring); err != nil {
			return res, err
		}
	}
	active := recs[len(recs)-1]
	res.Version = active.Version
	res.Next = active.CreatedAt.Add(o.Window)
	if len(recs) > 1 {
		ring, err := loadRing(ctx, o, recs)
		if err != nil {
			return res, err
		}
		defer ring.Zero()
		if err := rewrapAll(ctx, o, ring, active.Version, &res); err != nil {
			return res, err
		}
		if err := destroyOld(ctx, o, ring, active.Version, started, &res); err != nil {
			return res, err
		}
	}
	if o.Transit == nil || active.Version == 1 {
		return res, nil // nothing to retire before the first rotation
	}
	min, err := transitVersion(active.Wrapped)
	if err != nil {
		return res, err
	}
	var others []string
	if err := o.Conn.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT keyring), '{}') FROM pgcloak.keys WHERE kek = $1 AND keyring <> $2`, o.KEK, o.Keyring).Scan(&others); err != nil {
		return res, err
	}
	if len(others) > 0 {
		return res, fmt.Errorf("the Transit key %s also wraps keyring(s) %s, which trimming it would destroy; give the subject keyring a Transit key of its own", o.KEK, strings.Join(others, ", "))
	}
	if err := o.Transit.Retire(ctx, o.KEK, min); err != nil {
		return res, err
	}
	res.TransitMin = min
	if _, err := o.Conn.Exec(ctx, `UPDATE pgcloak.shreds SET kek_min_version = $3 WHERE keyring = $1 AND version = $2 AND kek_min_version IS DISTINCT FROM $3`,
		o.Keyring, int32(active.Version), min); err != nil {
		return res, err
	}
	return res, nil
}

// loadRing unwraps the keyring's stored versions into a keyring of this
// process. A version that cannot be unwrapped any more (its Transit version
// retired) is left out; if a subject key still needs it, that is an error.
func loadRing(ctx context.Context, o ShredOptions, recs []keystore.Record) (*crypto.Keyring, error) {
	ring := crypto.NewKeyring(o.Keyring)
	for _, r := range recs {
		if err := ring.AddWrapped(ctx, o.KMS, r.KEK, r.Version, r.Wrapped); err != nil {
			var n int64
			if qerr := o.Conn.QueryRow(ctx, `SELECT count(*) FROM pgcloak.subject_keys WHERE keyring = $1 AND wrap_version = $2`, o.Keyring, int32(r.Version)).Scan(&n); qerr != nil || n > 0 {
				ring.Zero()
				return nil, fmt.Errorf("%w (and %d subject keys are wrapped by it)", err, n)
			}
			o.Log.Warn("a destroyed version cannot be unwrapped; no subject key needs it", zap.Uint32("version", r.Version), zap.Error(err))
		}
	}
	return ring, nil
}

// rewrapAll rewraps the subject keys under versions older than active, a
// batch per transaction.
func rewrapAll(ctx context.Context, o ShredOptions, ring *crypto.Keyring, active uint32, res *ShredResult) error {
	for {
		var n int
		err := pgx.BeginFunc(ctx, o.Conn, func(tx pgx.Tx) error {
			var err error
			n, err = rewrapBatch(ctx, tx, o, ring, active)
			return err
		})
		if err != nil {
			return fmt.Errorf("rewrap the subject keys of keyring %s: %w", o.Keyring, err)
		}
		res.Rewrapped += int64(n)
		if n < o.Batch {
			return nil
		}
	}
}

// rewrapBatch rewraps up to o.Batch subject keys under old versions.
func rewrapBatch(ctx context.Context, tx pgx.Tx, o ShredOptions, ring *crypto.Keyring, active uint32) (int, error) {
	rows, err := tx.Query(ctx, `SELECT key_id, wrapped FROM pgcloak.subject_keys WHERE keyring = $1 AND wrap_version < $2
		ORDER BY key_id LIMIT $3 FOR UPDATE`, o.Keyring, int32(active), o.Batch)
	if err != nil {
		return 0, err
	}
	type row struct{ id, wrapped []byte }
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.wrapped)
		return x, err
	})
	if err != nil {
		return 0, err
	}
	for _, r := range batch {
		var id crypto.SubjectKeyID
		copy(id[:], r.id)
		dek, err := ring.Decrypt(nil, r.wrapped, wrapColumn(id))
		if err != nil {
			return 0, fmt.Errorf("subject key %s: %w", id, err)
		}
		wrapped, err := ring.Encrypt(nil, dek, wrapColumn(id), crypto.Randomized)
		crypto.DEK(dek).Zero()
		if err != nil {
			return 0, err
		}
		h, _ := crypto.ParseHeader(wrapped)
		if h.KeyVersion != active {
			return 0, fmt.Errorf("keyring %s encrypts with version %d, not %d", o.Keyring, h.KeyVersion, active)
		}
		if _, err := tx.Exec(ctx, `UPDATE pgcloak.subject_keys SET wrapped = $2, wrap_version = $3 WHERE key_id = $1`, r.id, wrapped, int32(active)); err != nil {
			return 0, err
		}
	}
	return len(batch), nil
}

// destroyOld deletes the versions older than active in one transaction
// with the writers' lock: the delete waits for instances inserting a subject
// key under an old version (they hold its row FOR SHARE), and the keys they
// made are rewrapped before it commits. Instances that try afterwards find
// the version gone and load the active one.
func destroyOld(ctx context.Context, o ShredOptions, ring *crypto.Keyring, active uint32, started time.Time, res *ShredResult) error {
	return pgx.BeginFunc(ctx, o.Conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(keystore.LockID)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM pgcloak.keys WHERE keyring = $1 AND version < $2 RETURNING version`, o.Keyring, int32(active))
		if err != nil {
			return err
		}
		gone, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		for {
			n, err := rewrapBatch(ctx, tx, o, ring, active)
			if err != nil {
				return err
			}
			res.Rewrapped += int64(n)
			if n < o.Batch {
				break
			}
		}
		for _, v := range gone {
			res.Destroyed = append(res.Destroyed, uint32(v))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgcloak.shreds (keyring, version, destroyed, rewrapped, kek, started_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			o.Keyring, int32(active), gone, res.Rewrapped, o.KEK, started); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, keystore.Channel, o.Keyring)
		return err
	})
}

// transitVersion is the Transit version that wrapped a key ("vault:v3:…" → 3).
func transitVersion(wrapped []byte) (int, error) {
	v := vault.KEKVersion(wrapped)
	n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
	if v == "" || err != nil {
		return 0, errors.New("the active version is not wrapped by Vault Transit")
	}
	return n, nil
}
