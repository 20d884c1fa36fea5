package keystore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/crypto"
)

// DefaultRefresh is how often a Loader looks for new versions when
// Options.Refresh is zero (the config's key_refresh default).
const DefaultRefresh = 30 * time.Second

// ReloadInterval is the least time between two refreshes that Reload
// performs; calls in between return the last result at once.
const ReloadInterval = time.Second

// refreshTimeout bounds one refresh: a query and one unwrap per new version.
const refreshTimeout = 30 * time.Second

// Options configures a Loader.
type Options struct {
	// Store is the open key store; the Loader does not close it.
	Store *Store
	// KMS unwraps the stored keys; the Loader does not close it.
	KMS crypto.KMS
	// Keyrings names the keyrings to load (the config's keys:). Each must
	// have at least one version when Load runs.
	Keyrings []string
	// Refresh is how often to look for new versions (default DefaultRefresh).
	Refresh time.Duration
	// DSN, if set, is the admin connection string on which the Loader also
	// LISTENs on Channel, so that a rotation is picked up at once. Polling
	// every Refresh stays the guarantee.
	DSN string
	// Logger receives refresh failures (warn) and new versions (info). Nil
	// logs nothing. Key bytes are never logged.
	Logger *zap.Logger
	// Shredded names the keyrings whose versions are unloaded (and wiped)
	// once they are no longer in pgcloak.keys: the subject keyrings, whose
	// old versions a shred rotation destroys. Other keyrings keep every
	// version they loaded until the process ends.
	Shredded []string
}

// Loader holds the unwrapped data keys of the configured keyrings and keeps
// them current. It implements crypto.Keyrings.
//
// Concurrency: Keyring is lock-free and may be called from any number of
// goroutines; the returned keyrings gain versions in place. Reload may be
// called concurrently; one refresh runs at a time.
type Loader struct {
	store    *Store
	kms      crypto.KMS
	rings    map[string]*crypto.Keyring // fixed after Load
	names    []string                   // sorted keys of rings
	shredded map[string]bool            // Options.Shredded
	refresh  time.Duration
	log      *zap.Logger

	sem        chan struct{} // held while refreshing
	lastReload time.Time     // guarded by sem
	lastErr    error         // guarded by sem
	kick       chan struct{} // a notification arrived

	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	refreshes atomic.Uint64
	failures  atomic.Uint64
	unwraps   atomic.Uint64
	// refreshed is when the last refresh that succeeded for every keyring
	// began (Unix nanoseconds).
	refreshed atomic.Int64
}

// Stats counts a Loader's work, for metrics and tests.
type Stats struct {
	Refreshes uint64 // refreshes run (start, polls, notifications, Reload)
	Failures  uint64 // refreshes that failed for at least one keyring
	Unwraps   uint64 // KMS Unwrap calls
}

// Load loads every version of every keyring and starts the refresh. It
// fails, naming the cause (the KMS address, the table, the keyring), when a
// keyring has no version or a version cannot be unwrapped: a proxy must not
// be ready without its keys.
func Load(ctx context.Context, o Options) (*Loader, error) {
	if o.Store == nil || o.KMS == nil {
		return nil, errors.New("keystore: Load needs a Store and a KMS")
	}
	l := &Loader{
		store:   o.Store,
		kms:     o.KMS,
		rings:   make(map[string]*crypto.Keyring, len(o.Keyrings)),
		refresh: o.Refresh,
		log:     o.Logger,
		sem:     make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
	}
	if l.refresh <= 0 {
		l.refresh = DefaultRefresh
	}
	l.shredded = map[string]bool{}
	for _, n := range o.Shredded {
		l.shredded[n] = true
	}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	for _, n := range o.Keyrings {
		if _, dup := l.rings[n]; !dup {
			l.rings[n] = crypto.NewKeyring(n)
			l.names = append(l.names, n)
		}
	}
	slices.Sort(l.names)
	if err := l.refreshNow(ctx); err != nil {
		l.zero()
		return nil, err
	}
	for _, n := range l.names {
		if _, ok := l.rings[n].Active(); !ok {
			l.zero()
			return nil, fmt.Errorf("keystore: keyring %q has no data key in pgcloak.keys; run pgcloak keys init", n)
		}
	}
	bg, stop := context.WithCancel(context.Background())
	l.stop = stop
	l.wg.Add(1)
	go l.poll(bg)
	if o.DSN != "" {
		l.wg.Add(1)
		go l.listen(bg, o.DSN)
	}
	return l, nil
}

// Keyring returns the keyring called name.
func (l *Loader) Keyring(name string) (*crypto.Keyring, error) {
	if k, ok := l.rings[name]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("keystore: no keyring %q (configured: %s)", name, strings.Join(l.names, ", "))
}

// Names returns the configured keyrings, sorted.
func (l *Loader) Names() []string { return slices.Clone(l.names) }

// Refresh is the polling interval: every instance encrypts with a new
// version within Refresh plus one refresh's time of its creation.
func (l *Loader) Refresh() time.Duration { return l.refresh }

// LastRefresh is when the last refresh that read every keyring's versions
// began: keys created before it are loaded. A growing age means pgcloak
// cannot reach pgcloak.keys or the KMS (the keys already loaded keep
// working).
func (l *Loader) LastRefresh() time.Time { return time.Unix(0, l.refreshed.Load()) }

// Stats returns the counters.
func (l *Loader) Stats() Stats {
	return Stats{Refreshes: l.refreshes.Load(), Failures: l.failures.Load(), Unwraps: l.unwraps.Load()}
}

// Reload looks for new versions now, for a caller that met a value under a
// version it has not loaded (*crypto.UnknownKeyVersionError). Calls are
// rate-limited to one refresh per ReloadInterval; a call within the interval
// returns the last refresh's result without waiting.
func (l *Loader) Reload(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()
	if time.Since(l.lastReload) < ReloadInterval {
		return l.lastErr
	}
	l.lastReload = time.Now()
	l.lastErr = l.refreshLocked(ctx)
	return l.lastErr
}

// Close stops refreshing and zeroes every data key. Call it after the last
// Encrypt or Decrypt has returned (see crypto.Keyring.Zero). It is safe to
// call more than once.
func (l *Loader) Close() {
	l.closed.Do(func() {
		if l.stop != nil {
			l.stop()
		}
		l.wg.Wait()
		l.zero()
	})
}

func (l *Loader) zero() {
	for _, k := range l.rings {
		k.Zero()
	}
}

func (l *Loader) refreshNow(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()
	return l.refreshLocked(ctx)
}

// refreshLocked reads the rows of the configured keyrings and adds the
// versions not loaded yet. A keyring gains all its new versions or, if any
// fails to unwrap, none of them (the next refresh tries again); other
// keyrings are not held back.
func (l *Loader) refreshLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	begin := time.Now()
	l.refreshes.Add(1)
	recs, err := l.store.Records(ctx, l.names...)
	if err != nil {
		l.failures.Add(1)
		return fmt.Errorf("keystore: %w", err)
	}
	var errs []error
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].Keyring == recs[i].Keyring {
			j++
		}
		if err := l.addNew(ctx, l.rings[recs[i].Keyring], recs[i:j]); err != nil {
			errs = append(errs, err)
		} else if l.shredded[recs[i].Keyring] {
			l.dropGone(l.rings[recs[i].Keyring], recs[i:j])
		}
		i = j
	}
	if len(errs) > 0 {
		l.failures.Add(1)
		return errors.Join(errs...)
	}
	l.refreshed.Store(begin.UnixNano())
	return nil
}

// addNew unwraps the records that kr has not loaded and adds them, newest
// first, so the newest becomes the active version in one step.
func (l *Loader) addNew(ctx context.Context, kr *crypto.Keyring, recs []Record) error {
	type fresh struct {
		version uint32
		dek     crypto.DEK
	}
	var add []fresh
	defer func() {
		for _, f := range add {
			f.dek.Zero()
		}
	}()
	for _, r := range recs {
		if kr.Has(r.Version) {
			continue
		}
		l.unwraps.Add(1)
		dek, err := l.kms.Unwrap(ctx, r.KEK, r.Wrapped)
		if err != nil {
			return fmt.Errorf("keystore: keyring %q version %d (KEK %q): %w", kr.Name(), r.Version, r.KEK, err)
		}
		add = append(add, fresh{r.Version, dek})
	}
	for i := len(add) - 1; i >= 0; i-- {
		if err := kr.Add(add[i].version, add[i].dek); err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		l.log.Info("loaded data key", zap.String("keyring", kr.Name()), zap.Uint32("version", add[i].version))
	}
	return nil
}

// dropGone unloads the versions of kr that are no longer stored (recs).
func (l *Loader) dropGone(kr *crypto.Keyring, recs []Record) {
	stored := map[uint32]bool{}
	for _, r := range recs {
		stored[r.Version] = true
	}
	for _, v := range kr.Versions() {
		if !stored[v] && kr.Drop(v) {
			l.log.Info("unloaded a data key version destroyed by a shred rotation", zap.String("keyring", kr.Name()), zap.Uint32("version", v))
		}
	}
}

// poll refreshes every l.refresh, or at once on a notification. After a
// failure it retries sooner, backing off from 1s to l.refresh, and logs the
// failure when it changes or once a minute.
func (l *Loader) poll(ctx context.Context) {
	defer l.wg.Done()
	wait, fails := l.refresh, 0
	var lastMsg string
	var lastLog time.Time
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.kick:
		}
		err := l.refreshNow(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fails++
			wait = min(l.refresh, time.Second<<min(fails-1, 16))
			if msg := err.Error(); msg != lastMsg || time.Since(lastLog) >= time.Minute {
				l.log.Warn("cannot load new data key versions; the keys already loaded keep working", zap.Error(err),
					zap.Int("failures", fails), zap.Duration("retry_in", wait))
				lastMsg, lastLog = msg, time.Now()
			}
		} else {
			if fails > 0 {
				l.log.Info("data key versions loaded again", zap.Int("after_failures", fails))
			}
			wait, fails, lastMsg = l.refresh, 0, ""
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// listen waits for notifications on Channel and kicks poll for each (and
// after each reconnection, since notifications may have been missed).
func (l *Loader) listen(ctx context.Context, dsn string) {
	defer l.wg.Done()
	Listen(ctx, dsn, Channel, l.log, func(string) { l.kickPoll() })
}

// Listen LISTENs on channel on a connection of its own until ctx ends,
// calling notified with the payload of each notification, and with "" once
// connected (notifications may have been missed before). It reconnects with
// backoff from 1s to 1m; a lost connection is logged at debug (the callers
// poll as well, which is their guarantee).
func Listen(ctx context.Context, dsn, channel string, log *zap.Logger, notified func(payload string)) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, channel, notified)
		if ctx.Err() != nil {
			return
		}
		d := backoff/2 + rand.N(backoff/2+1)
		log.Debug("LISTEN connection lost; polling continues", zap.String("channel", channel), zap.Error(err), zap.Duration("retry_in", d))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

func listenOnce(ctx context.Context, dsn, channel string, notified func(string)) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	notified("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		notified(n.Payload)
	}
}

func (l *Loader) kickPoll() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}
