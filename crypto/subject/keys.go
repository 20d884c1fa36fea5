package subject

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
)

var (
	// ErrForgotten means the value's subject key was destroyed (pgcloak
	// forget, or a retention rule): the value cannot be read any more.
	ErrForgotten = errors.New("its subject was forgotten (pgcloak forget): the key is destroyed")
	// ErrUnknownKey means no subject key has the value's id, and none was
	// forgotten here: the value was copied from another database, or a
	// backup was restored without the subject keys of its time.
	ErrUnknownKey = errors.New("no subject key has this value's id in pgcloak.subject_keys, and none was forgotten here (a value from another database, or a backup restored without its subject keys?)")
)

// reloader is implemented by key loaders that can look for new versions
// (crypto/keystore's Loader).
type reloader interface {
	Reload(ctx context.Context) error
}

// Keys finds, makes and caches the subject keys of the configured tables,
// for every session of one pgcloak instance. Subject keys live in
// pgcloak.subject_keys, each wrapped by a version of its table's keyring, so
// every instance shares them; the ones in use are kept unwrapped in a
// bounded cache. No Vault call is made here: a subject not in the cache
// costs one database read (and its first write, one insert).
//
// Forgets reach every instance through NOTIFY pgcloak_subjects and, as the
// guarantee, through reading pgcloak.forgotten every key_refresh.
//
// Concurrency: every method may be called from any number of goroutines.
type Keys struct {
	pool    *pgxpool.Pool
	rings   crypto.Keyrings
	tables  map[[2]string]*Table
	cache   *cache
	log     *zap.Logger
	refresh time.Duration

	pollMu  sync.Mutex
	lastSeq int64 // guarded by pollMu

	stop context.CancelFunc
	wg   sync.WaitGroup

	reads, creates, forgets atomic.Uint64
}

// Stats counts the database work of a Keys, for metrics, tests and the
// benchmarks.
type Stats struct {
	Reads   uint64 // subject keys read from the database (cache misses)
	Creates uint64 // subject keys made (first writes of a subject)
	Forgets uint64 // forgotten keys dropped from the cache
	Cached  int    // entries in the cache, tombstones included
}

// Open connects to the protected database (cfg.AdminDSN), checks that the
// subject tables exist, and starts following forgets. rings must hold the
// keyrings of cfg's subjects: (a keystore.Loader, which Keys asks to reload
// when a wrapped key names a version it has not loaded).
func Open(ctx context.Context, cfg *config.Config, rings crypto.Keyrings, log *zap.Logger) (*Keys, error) {
	if log == nil {
		log = zap.NewNop()
	}
	pc, err := pgxpool.ParseConfig(cfg.AdminDSN)
	if err != nil {
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	pc.MaxConns, pc.MinConns = 4, 0
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "pgcloak subjects"
	}
	k := &Keys{rings: rings, cache: newCache(cfg.SubjectCacheOrDefault()), log: log, refresh: cfg.KeyRefresh}
	if k.refresh <= 0 {
		k.refresh = config.DefaultKeyRefresh
	}
	if k.tables, err = tablesOf(cfg, k); err != nil {
		return nil, err
	}
	if k.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("subject keys: connect: %w", err)
	}
	if err := k.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM pgcloak.forgotten`).Scan(&k.lastSeq); err != nil {
		k.pool.Close()
		return nil, fmt.Errorf("subject keys: %w", notInitialized(err))
	}
	for _, t := range k.tables {
		if _, err := rings.Keyring(t.Keyring); err != nil {
			k.pool.Close()
			return nil, fmt.Errorf("subjects of %s: %w", t, err)
		}
	}
	bg, stop := context.WithCancel(context.Background())
	k.stop = stop
	k.wg.Add(2)
	go k.poll(bg)
	go k.listen(bg, cfg.AdminDSN)
	return k, nil
}

// Close stops following forgets and drops the connections and the cache.
func (k *Keys) Close() {
	k.stop()
	k.wg.Wait()
	k.pool.Close()
	k.cache = newCache(1)
}

// Table returns the table with subjects schema.table, or nil.
func (k *Keys) Table(schema, table string) *Table { return k.tables[[2]string{schema, table}] }

// Stats returns the counters.
func (k *Keys) Stats() Stats {
	return Stats{Reads: k.reads.Load(), Creates: k.creates.Load(), Forgets: k.forgets.Load(), Cached: k.cache.len()}
}

// KeyFor returns the key of subject (its canonical text: see Resolution) in
// table t, making and storing it if the subject has none: a first write, or
// the first since the subject was forgotten.
func (t *Table) KeyFor(ctx context.Context, subject string) (*crypto.SubjectKey, error) {
	res, err := t.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	k := t.keys
	ref := subjectRef{scope: res.Scope, hash: HashOf(res.Scope, subject)}
	if key := k.cache.bySubjectRef(ref); key != nil {
		return key, nil
	}
	for attempt := 0; ; attempt++ {
		epoch := k.cache.currentEpoch()
		key, err := k.load(ctx, t, ref)
		if errors.Is(err, errVersionGone) && attempt == 0 {
			// A shred rotation destroyed the version this instance wraps
			// with: load the new one and try again.
			if r, ok := k.rings.(reloader); ok {
				if rerr := r.Reload(ctx); rerr != nil {
					return nil, fmt.Errorf("%w; loading the new version failed: %v", err, rerr)
				}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("subject key of %s: %w", t, err)
		}
		k.cache.put(key.ID(), key, ref, epoch)
		return key, nil
	}
}

// errVersionGone: the keyring version a new subject key was wrapped under
// is no longer in pgcloak.keys.
var errVersionGone = errors.New("the keyring version that wraps new subject keys was destroyed by a shred rotation")

// load reads the subject's key, or makes it.
func (k *Keys) load(ctx context.Context, t *Table, ref subjectRef) (*crypto.SubjectKey, error) {
	k.reads.Add(1)
	var id, wrapped []byte
	var keyring string
	err := k.pool.QueryRow(ctx, `SELECT key_id, keyring, wrapped FROM pgcloak.subject_keys WHERE scope = $1 AND subject_hash = $2`,
		ref.scope, ref.hash[:]).Scan(&id, &keyring, &wrapped)
	if err == nil {
		return k.unwrap(ctx, keyring, id, wrapped)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, notInitialized(err)
	}
	return k.create(ctx, t, ref)
}

// create makes a key for the subject and stores it, wrapped by the active
// version of the table's keyring. The insert takes a share lock on that
// version's row of pgcloak.keys, so a shred rotation that deletes the
// version either waits for it (and rewraps the new key) or has already
// deleted it (and nothing is inserted: errVersionGone). If another instance
// stored a key for the subject first, that one is used.
func (k *Keys) create(ctx context.Context, t *Table, ref subjectRef) (*crypto.SubjectKey, error) {
	ring, err := k.rings.Keyring(t.Keyring)
	if err != nil {
		return nil, err
	}
	id := crypto.NewSubjectKeyID()
	dek := crypto.NewDEK()
	defer dek.Zero()
	wrapped, err := ring.Encrypt(nil, dek, wrapColumn(id), crypto.Randomized)
	if err != nil {
		return nil, err
	}
	h, _ := crypto.ParseHeader(wrapped)
	tag, err := k.pool.Exec(ctx, `INSERT INTO pgcloak.subject_keys (key_id, scope, subject_hash, keyring, wrap_version, wrapped)
		SELECT $1, $2, $3, v.keyring, v.version, $6 FROM pgcloak.keys v WHERE v.keyring = $4 AND v.version = $5 FOR SHARE
		ON CONFLICT (scope, subject_hash) DO NOTHING`, id[:], ref.scope, ref.hash[:], t.Keyring, int32(h.KeyVersion), wrapped)
	if err != nil {
		return nil, notInitialized(err)
	}
	if tag.RowsAffected() == 1 {
		k.creates.Add(1)
		return crypto.NewSubjectKey(id, dek)
	}
	// Someone else was first, or the version is gone.
	var otherID, otherWrapped []byte
	var keyring string
	err = k.pool.QueryRow(ctx, `SELECT key_id, keyring, wrapped FROM pgcloak.subject_keys WHERE scope = $1 AND subject_hash = $2`,
		ref.scope, ref.hash[:]).Scan(&otherID, &keyring, &otherWrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errVersionGone
	}
	if err != nil {
		return nil, err
	}
	return k.unwrap(ctx, keyring, otherID, otherWrapped)
}

// KeyByID returns the subject key with this id: from the cache, or with
// one database read. ErrForgotten when it was destroyed, ErrUnknownKey when
// it was never stored here.
func (k *Keys) KeyByID(ctx context.Context, id crypto.SubjectKeyID) (*crypto.SubjectKey, error) {
	if key, forgotten, ok := k.cache.byKeyID(id); ok {
		if forgotten {
			return nil, ErrForgotten
		}
		return key, nil
	}
	epoch := k.cache.currentEpoch()
	k.reads.Add(1)
	var scope, keyring *string
	var hash, wrapped []byte
	var forgotten bool
	err := k.pool.QueryRow(ctx, `SELECT sk.scope, sk.subject_hash, sk.keyring, sk.wrapped,
			EXISTS (SELECT 1 FROM pgcloak.forgotten f WHERE f.key_id = $1)
		FROM (SELECT 1) one LEFT JOIN pgcloak.subject_keys sk ON sk.key_id = $1`, id[:]).Scan(&scope, &hash, &keyring, &wrapped, &forgotten)
	if err != nil {
		return nil, fmt.Errorf("subject key %s: %w", id, notInitialized(err))
	}
	switch {
	case scope == nil && forgotten:
		k.cache.put(id, nil, subjectRef{}, 0)
		return nil, ErrForgotten
	case scope == nil:
		return nil, ErrUnknownKey
	}
	key, err := k.unwrap(ctx, *keyring, id[:], wrapped)
	if err != nil {
		return nil, err
	}
	ref := subjectRef{scope: *scope}
	copy(ref.hash[:], hash)
	k.cache.put(id, key, ref, epoch)
	return key, nil
}

// unwrap opens a stored subject key with its keyring, loading new versions
// once if it names one not loaded yet.
func (k *Keys) unwrap(ctx context.Context, keyring string, rawID, wrapped []byte) (*crypto.SubjectKey, error) {
	var id crypto.SubjectKeyID
	if len(rawID) != len(id) {
		return nil, fmt.Errorf("subject key id of %d bytes in pgcloak.subject_keys", len(rawID))
	}
	copy(id[:], rawID)
	ring, err := k.rings.Keyring(keyring)
	if err != nil {
		return nil, fmt.Errorf("subject key %s: %w", id, err)
	}
	dek, err := ring.Decrypt(nil, wrapped, wrapColumn(id))
	var uk *crypto.UnknownKeyVersionError
	if errors.As(err, &uk) {
		if r, ok := k.rings.(reloader); ok {
			rerr := r.Reload(ctx)
			if dek, err = ring.Decrypt(nil, wrapped, wrapColumn(id)); err != nil && rerr != nil {
				err = fmt.Errorf("%w; loading new versions failed: %v", err, rerr)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("subject key %s: unwrap with keyring %q: %w", id, keyring, err)
	}
	defer crypto.DEK(dek).Zero()
	return crypto.NewSubjectKey(id, dek)
}

// wrapColumn is the identity a wrapped subject key is bound to, so that a
// wrapped key moved to another row (another key id) does not unwrap.
func wrapColumn(id crypto.SubjectKeyID) crypto.ColumnID {
	c, err := crypto.NewColumnID("\x01pgcloak", "subject key", id.String())
	if err != nil {
		panic(err) // fixed, valid names
	}
	return c
}

// poll reads pgcloak.forgotten every refresh: the guarantee that a forget
// reaches this instance within key_refresh when a notification is lost.
func (k *Keys) poll(ctx context.Context) {
	defer k.wg.Done()
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if err := k.readForgotten(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("cannot read pgcloak.forgotten; retrying at the next refresh", zap.Error(err))
		}
	}
}

// readForgotten drops from the cache every key forgotten since the last
// read.
func (k *Keys) readForgotten(ctx context.Context) error {
	k.pollMu.Lock()
	defer k.pollMu.Unlock()
	rows, err := k.pool.Query(ctx, `SELECT seq, key_id FROM pgcloak.forgotten WHERE seq > $1 ORDER BY seq`, k.lastSeq)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var raw []byte
		if err := rows.Scan(&seq, &raw); err != nil {
			return err
		}
		var id crypto.SubjectKeyID
		copy(id[:], raw)
		k.dropForgotten(id)
		k.lastSeq = seq
	}
	return rows.Err()
}

func (k *Keys) dropForgotten(id crypto.SubjectKeyID) {
	k.forgets.Add(1)
	k.cache.forget(id)
}

// listen drops forgotten keys as their notifications arrive, and reads
// pgcloak.forgotten after each (re)connection.
func (k *Keys) listen(ctx context.Context, dsn string) {
	defer k.wg.Done()
	keystore.Listen(ctx, dsn, Channel, k.log, func(payload string) {
		if payload == "" {
			if err := k.readForgotten(ctx); err != nil && ctx.Err() == nil {
				k.log.Debug("cannot read pgcloak.forgotten; polling continues", zap.Error(err))
			}
			return
		}
		var id crypto.SubjectKeyID
		if raw, err := hex.DecodeString(payload); err == nil && len(raw) == len(id) {
			copy(id[:], raw)
			k.dropForgotten(id)
		}
	})
}
