package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
)

// Protector is the engine's side of the seam with the relay (proxy.Hooks):
// it holds the protection of one database (rules, keys and the catalog as
// last read) and makes the engine of each session to that database.
// Sessions to other databases are relayed untouched.
//
// Rules are reloadable (SetRules). A session keeps the rule set it logged
// in with until it ends; its catalog is kept in step all the same. New
// sessions get the newest rule set at once. See reload.go.
type Protector struct {
	log *zap.Logger
	// database is the protected database (admin_dsn's).
	database string
	// current is the rule set of new sessions; nil until the first catalog
	// read.
	current atomic.Pointer[ruleSet]
	// mu guards the sessions counts of rule sets and retired.
	mu sync.Mutex
	// retired are rule sets a reload replaced that sessions still use.
	retired []*ruleSet
	// loading, when set, is why the protected database is not served yet
	// (keys or catalog not loaded): relaying would let plaintext through.
	loading atomic.Pointer[string]
	catalog catalogWatch
	// guard holds the access policy and the audit log, metrics the
	// metrics of protected values (access.go).
	guard   atomic.Pointer[Guard]
	metrics atomic.Pointer[Metrics]
}

var _ proxy.Hooks = (*Protector)(nil)

// NewProtector returns a Protector for the database admin_dsn names. It is
// not ready (sessions to that database get 57P03) until WatchCatalog or
// Install gives it a protection.
func NewProtector(adminDSN string, log *zap.Logger) (*Protector, error) {
	cfg, err := pgconn.ParseConfig(adminDSN)
	if err != nil {
		return nil, fmt.Errorf("admin_dsn: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Protector{log: log, database: cfg.Database}
	p.SetNotReady("loading keys and protected columns")
	return p, nil
}

// SetNotReady keeps sessions to the protected database out with reason
// until a protection is installed.
func (p *Protector) SetNotReady(reason string) { p.loading.Store(&reason) }

// Install makes prot the protection, for a fixed catalog (tests, the demo):
// WatchCatalog does it for serve.
func (p *Protector) Install(prot *Protection) {
	p.installRules(prot, nil)
	p.loading.Store(nil)
}

// protection is the newest protection of the current rule set, or nil.
func (p *Protector) protection() *Protection {
	if rs := p.current.Load(); rs != nil {
		return rs.prot.Load()
	}
	return nil
}

// Ready implements proxy.Hooks.
func (p *Protector) Ready() (bool, string) {
	if r := p.loading.Load(); r != nil {
		return false, *r
	}
	if prot := p.protection(); prot != nil {
		if why := prot.notReadyReason(); why != "" {
			return false, why
		}
	}
	if g := p.guard.Load(); g != nil && g.Audit != nil && g.Audit.Blocks() {
		if why := g.Audit.Failing(); why != "" {
			return false, "the audit log cannot be written (" + why + "); audit.on_failure: block"
		}
	}
	return true, ""
}

// Session implements proxy.Hooks.
func (p *Protector) Session(info proxy.SessionInfo) (proxy.Hook, error) {
	if info.Database != p.database {
		return nil, nil // rules apply to one database; the others are relayed
	}
	switch info.Replication {
	case "":
	case "true", "on", "yes", "1":
		// Physical replication (pg_basebackup, a standby) copies the data
		// files: ciphertext, and nothing pgcloak could or should change.
		return nil, nil
	default:
		return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("logical replication from database %s cannot pass through pgcloak, "+
			"which cannot decrypt a replication stream: connect subscribers and decoding clients to PostgreSQL directly (they receive ciphertext)", p.database)}
	}
	if ok, why := p.Ready(); !ok {
		return nil, pgerr.New(pgerrcode.CannotConnectNow, "not ready: "+why)
	}
	rs := p.current.Load()
	ss := &session{prot: p, rs: rs, info: info, user: info.User, started: time.Now(), log: p.log.With(zap.String("client", info.ClientAddr), zap.String("user", info.User))}
	ss.cloak = newCloak(rs.prot.Load(), info.User)
	return ss, nil
}
