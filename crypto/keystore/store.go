package keystore

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcloak/pgcloak/crypto"
)

// Channel is the LISTEN/NOTIFY channel on which a new version is announced;
// the payload is the keyring's name.
const Channel = "pgcloak_keys"

// LocalKEK is the kek column of keys wrapped by the local file KMS.
const LocalKEK = "local"

// LockID is the transaction-level advisory lock that serialises the writers
// of pgcloak.keys (init, rotate, rewrap, shred) across processes: "pgcloak"
// in ASCII.
const LockID = 0x7067636c6f616b

// schemaSQL creates the table; every statement is idempotent.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS pgcloak;
CREATE TABLE IF NOT EXISTS pgcloak.keys (
	keyring    text        NOT NULL,
	version    integer     NOT NULL CHECK (version >= 1),
	wrapped    bytea       NOT NULL,
	kek        text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (keyring, version)
);
COMMENT ON TABLE pgcloak.keys IS 'pgcloak data keys, wrapped by the KEK named in kek (a Vault Transit key, or "local"); managed by pgcloak keys';`

// ErrNotInitialized means the pgcloak.keys table does not exist.
var ErrNotInitialized = errors.New("table pgcloak.keys does not exist; run pgcloak keys init")

// Record is one row of pgcloak.keys: one version of a keyring's data key,
// wrapped.
type Record struct {
	Keyring   string
	Version   uint32
	KEK       string // the KMS key that wrapped it: a Transit key name, or LocalKEK
	Wrapped   []byte
	CreatedAt time.Time
}

// Store reads and writes pgcloak.keys through the admin connection
// (admin_dsn). It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	target string // user@host:port/db, for errors (never the password)
}

// OpenStore connects to the database that holds pgcloak.keys. dsn is a libpq
// keyword/value string or URL; a password may also come from PGPASSWORD or
// ~/.pgpass.
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	cfg.MaxConns = 2
	cfg.MinConns = 0
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pgcloak keys"
	}
	c := cfg.ConnConfig
	s := &Store{target: fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.errorf("connect", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.errorf("connect", err)
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() { s.pool.Close() }

// String names the database, without the password.
func (s *Store) String() string { return "PostgreSQL " + s.target }

func (s *Store) errorf(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") { // undefined_table, invalid_schema_name
		err = ErrNotInitialized
	}
	return fmt.Errorf("key store %s: %s: %w", s.target, op, err)
}

// Init creates the pgcloak schema and the pgcloak.keys table unless they
// exist, and reports whether it created the table.
func (s *Store) Init(ctx context.Context) (created bool, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT to_regclass('pgcloak.keys') IS NULL`).Scan(&created); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schemaSQL)
		return err
	})
	if err != nil {
		return false, s.errorf("create pgcloak.keys", err)
	}
	return created, nil
}

// Records returns the rows of the given keyrings (every row when none is
// given), ordered by keyring and version.
func (s *Store) Records(ctx context.Context, keyrings ...string) ([]Record, error) {
	q := `SELECT keyring, version, kek, wrapped, created_at FROM pgcloak.keys`
	var args []any
	if len(keyrings) > 0 {
		q += ` WHERE keyring = ANY($1)`
		args = append(args, keyrings)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY keyring, version`, args...)
	if err != nil {
		return nil, s.errorf("read pgcloak.keys", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var rec Record
		var v int32
		err := r.Scan(&rec.Keyring, &v, &rec.KEK, &rec.Wrapped, &rec.CreatedAt)
		rec.Version = uint32(v)
		return rec, err
	})
	if err != nil {
		return nil, s.errorf("read pgcloak.keys", err)
	}
	return recs, nil
}

// InitKeyring creates version 1 of keyring, wrapped by kms under kek, unless
// the keyring has a version. It returns the newest version and whether it
// created one.
func (s *Store) InitKeyring(ctx context.Context, kms crypto.KMS, keyring, kek string) (version uint32, created bool, err error) {
	return s.addVersion(ctx, kms, keyring, kek, true)
}

// Rotate creates the next version of keyring (the newest + 1), wrapped by
// kms under kek, and announces it on Channel. From then on every Loader
// encrypts with it once it has loaded it (see the package doc for the bound).
// The keyring must have a version already (InitKeyring).
func (s *Store) Rotate(ctx context.Context, kms crypto.KMS, keyring, kek string) (version uint32, err error) {
	v, _, err := s.addVersion(ctx, kms, keyring, kek, false)
	return v, err
}

func (s *Store) addVersion(ctx context.Context, kms crypto.KMS, keyring, kek string, first bool) (version uint32, created bool, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		var newest int32
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pgcloak.keys WHERE keyring = $1`, keyring).Scan(&newest); err != nil {
			return err
		}
		if first && newest > 0 {
			version = uint32(newest)
			return nil
		}
		if !first && newest == 0 {
			return fmt.Errorf("keyring %q has no version yet; run pgcloak keys init", keyring)
		}
		wrapped, err := wrapNew(ctx, kms, kek)
		if err != nil {
			return fmt.Errorf("keyring %q version %d: %w", keyring, newest+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgcloak.keys (keyring, version, wrapped, kek) VALUES ($1, $2, $3, $4)`,
			keyring, newest+1, wrapped, kek); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, keyring); err != nil {
			return err
		}
		version, created = uint32(newest+1), true
		return nil
	})
	if err != nil {
		return 0, false, s.errorf("add a version to keyring "+keyring, err)
	}
	return version, created, nil
}

// wrapNew makes a data key, wraps it, and checks that the wrapped key
// unwraps to the same bytes, so that a KMS credential that may encrypt but
// not decrypt is found now rather than when serve starts.
func wrapNew(ctx context.Context, kms crypto.KMS, kek string) ([]byte, error) {
	dek := crypto.NewDEK()
	defer dek.Zero()
	wrapped, err := kms.Wrap(ctx, kek, dek)
	if err != nil {
		return nil, err
	}
	back, err := kms.Unwrap(ctx, kek, wrapped)
	if err != nil {
		return nil, fmt.Errorf("check the new wrapped key: %w", err)
	}
	defer crypto.DEK(back).Zero()
	if subtle.ConstantTimeCompare(back, dek) != 1 {
		return nil, errors.New("check the new wrapped key: the KMS returned a different key")
	}
	return wrapped, nil
}

// Rewrapped is one row that Rewrap changed.
type Rewrapped struct {
	Keyring string
	Version uint32
	OldKEK  string
	KEK     string
	Before  []byte // wrapped key before
	After   []byte // wrapped key after
}

// Rewrap re-wraps every stored data key under the newest version of its
// KEK, in one transaction: either every row changes or none does. No row of
// user data is touched and the data keys stay the same.
//
// keks maps a keyring to the KEK it should use; a row whose kek differs (the
// config moved the keyring to another Transit key) is unwrapped and wrapped
// again under the new one, which briefly holds the data key in this process.
// Rows of keyrings missing from keks are rewrapped under their own KEK.
func (s *Store) Rewrap(ctx context.Context, kms crypto.KMS, keks map[string]string) ([]Rewrapped, error) {
	var out []Rewrapped
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT keyring, version, kek, wrapped FROM pgcloak.keys ORDER BY keyring, version FOR UPDATE`)
		if err != nil {
			return err
		}
		recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
			var rec Record
			var v int32
			err := r.Scan(&rec.Keyring, &v, &rec.KEK, &rec.Wrapped)
			rec.Version = uint32(v)
			return rec, err
		})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			kek := keks[rec.Keyring]
			if kek == "" {
				kek = rec.KEK
			}
			after, err := rewrapOne(ctx, kms, rec, kek)
			if err != nil {
				return fmt.Errorf("keyring %q version %d: %w", rec.Keyring, rec.Version, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE pgcloak.keys SET wrapped = $3, kek = $4 WHERE keyring = $1 AND version = $2`,
				rec.Keyring, int32(rec.Version), after, kek); err != nil {
				return err
			}
			out = append(out, Rewrapped{Keyring: rec.Keyring, Version: rec.Version, OldKEK: rec.KEK, KEK: kek, Before: rec.Wrapped, After: after})
		}
		return nil
	})
	if err != nil {
		return nil, s.errorf("rewrap", err)
	}
	return out, nil
}

func rewrapOne(ctx context.Context, kms crypto.KMS, rec Record, kek string) ([]byte, error) {
	if kek == rec.KEK {
		return kms.Rewrap(ctx, kek, rec.Wrapped)
	}
	dek, err := kms.Unwrap(ctx, rec.KEK, rec.Wrapped)
	if err != nil {
		return nil, err
	}
	defer crypto.DEK(dek).Zero()
	return kms.Wrap(ctx, kek, dek)
}

// tx runs fn in a transaction that holds the writers' advisory lock.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(LockID)); err != nil {
			return err
		}
		return fn(tx)
	})
}
