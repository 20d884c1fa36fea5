package config

import (
	"os"
	"slices"
	"strings"

	"go.uber.org/zap/zapcore"
)

// ConsoleDatabase is the database name that reaches pgcloak's admin console
// instead of PostgreSQL.
const ConsoleDatabase = "pgcloak"

// Values of libpq's target_session_attrs and load_balance_hosts that the
// upstream setting accepts.
var (
	TargetSessionAttrs = []string{"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
	LoadBalanceHosts   = []string{"disable", "random"}
)

// Routing is how pgcloak picks an upstream host for a new session: libpq's
// target_session_attrs and load_balance_hosts of the upstream setting.
type Routing struct {
	// TargetSessionAttrs is one of TargetSessionAttrs ("any" when unset).
	TargetSessionAttrs string
	// LoadBalanceHosts is one of LoadBalanceHosts ("disable" when unset).
	LoadBalanceHosts string
}

// UpstreamRouting reads the routing settings of an upstream connection
// string. As in libpq, PGTARGETSESSIONATTRS and PGLOADBALANCEHOSTS apply
// when the string does not set them. Values are not checked here (Parse
// does that).
func UpstreamRouting(upstream string) Routing {
	settings, _ := connSettings(upstream)
	get := func(key, env, def string) string {
		if v, ok := settings[key]; ok && v != "" {
			return v
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	return Routing{
		TargetSessionAttrs: get("target_session_attrs", "PGTARGETSESSIONATTRS", "any"),
		LoadBalanceHosts:   get("load_balance_hosts", "PGLOADBALANCEHOSTS", "disable"),
	}
}

// checkOps checks the operational keys: log_level, the console's
// admin_users and admin_auth_database, and the upstream's routing settings.
func checkOps(l *loader, c *Config) {
	if c.LogLevel != "" {
		if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
			l.problem("log_level", "unknown level %q; use debug, info, warn or error", c.LogLevel)
		}
	}
	for i, u := range c.AdminUsers {
		if strings.TrimSpace(u) == "" {
			l.problem("admin_users", "entry %d is empty; list role names, e.g. admin_users: [postgres]", i+1)
		} else if slices.Index(c.AdminUsers, u) != i {
			l.problem("admin_users", "%q is listed twice; list each role once", u)
		}
	}
	if c.AdminAuthDatabase == "" {
		l.problem("admin_auth_database", "must name a database that the admin users may connect to; the default is postgres")
	} else if c.AdminAuthDatabase == ConsoleDatabase {
		l.problem("admin_auth_database", "%q is the console itself; name a real database of the upstream server, e.g. postgres", ConsoleDatabase)
	}
	if strings.TrimSpace(c.Upstream) == "" {
		return // checkUpstream says it is required
	}
	r := UpstreamRouting(c.Upstream)
	if !slices.Contains(TargetSessionAttrs, r.TargetSessionAttrs) {
		return // checkUpstream reports it (pgconn knows the values)
	}
	if !slices.Contains(LoadBalanceHosts, r.LoadBalanceHosts) {
		l.problem("upstream", "unknown load_balance_hosts %q; use disable or random", r.LoadBalanceHosts)
	}
	if r.TargetSessionAttrs != "any" && c.AdminDSN == "" {
		l.problem("upstream", "target_session_attrs=%s needs admin_dsn: pgcloak asks each host whether it is a primary or a standby "+
			"(pg_is_in_recovery, transaction_read_only) with admin_dsn's role before it relays a client there; "+
			"add admin_dsn: \"user=pgcloak dbname=postgres\" (its host is not used for this), or remove target_session_attrs", r.TargetSessionAttrs)
	}
}
