package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Choosing the upstream host of a new session, as libpq chooses the server
// of a connection (libpq's "Multiple hosts", target_session_attrs and
// load_balance_hosts):
//
//   - hosts are tried in the order written, or in a random order for each
//     session with load_balance_hosts=random;
//   - with target_session_attrs=any the first host that accepts the
//     connection (TCP, then TLS per sslmode) gets the session;
//   - otherwise a host must also have the role asked for: primary or
//     standby (pg_is_in_recovery()), read-write or read-only
//     (transaction_read_only); prefer-standby tries the standbys first, then
//     any host.
//
// libpq asks a host its role after logging in, and moves on to the next
// host when the answer does not fit. pgcloak cannot: the client's
// credentials go to the first server it relays them to (SCRAM cannot be
// replayed). So pgcloak asks each host itself, over a connection of its own
// made with admin_dsn's user, password and database (and the upstream
// setting's address and TLS), and relays the client only to a host whose
// answer fits. Answers are kept for roleTTL, so a promotion or a switch-over
// reaches new sessions within about a second.

// roleTTL is how long a host's answer (or its failure) is used for new
// sessions before it is asked again.
const roleTTL = time.Second

// roleQuery asks a host what target_session_attrs needs to know.
const roleQuery = "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only')"

// upstreamHost is one address of the upstream setting, with its targets
// (TLS then plaintext, as sslmode says) and what pgcloak last learnt of its
// role.
type upstreamHost struct {
	addr    string
	targets []upstreamTarget

	mu       sync.Mutex // held while the host is asked, so one asks at a time
	checked  time.Time
	standby  bool  // in recovery
	readOnly bool  // transaction_read_only is on
	err      error // why it could not be asked
	conn     *pgconn.PgConn
}

// HostInfo is what pgcloak knows of an upstream host (the console's SHOW
// HOSTS).
type HostInfo struct {
	Addr string
	// Role is "primary", "standby" (as pg_is_in_recovery() said),
	// "unreachable", or "" when pgcloak has not asked (target_session_attrs
	// is any).
	Role     string
	ReadOnly bool
	Checked  time.Time
	Error    string
}

// connect returns a connection to the first host that accepts it and fits
// target_session_attrs, with TLS negotiated where the target asks for it.
func (c *connector) connect(ctx context.Context) (net.Conn, upstreamTarget, error) {
	hosts := c.hosts
	if c.routing.LoadBalanceHosts == "random" && len(hosts) > 1 {
		hosts = append([]*upstreamHost(nil), hosts...)
		rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	}
	var errs []error
	for _, want := range passes(c.routing.TargetSessionAttrs) {
		conn, t, err := c.tryHosts(ctx, hosts, want)
		if err == nil {
			return conn, t, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, upstreamTarget{}, errors.Join(errs...)
}

// passes are the roles a session may have, in the order tried; "" is any.
func passes(targetSessionAttrs string) []string {
	switch targetSessionAttrs {
	case "any":
		return []string{""}
	case "prefer-standby":
		return []string{"standby", ""}
	}
	return []string{targetSessionAttrs}
}

func (c *connector) tryHosts(ctx context.Context, hosts []*upstreamHost, want string) (net.Conn, upstreamTarget, error) {
	var errs []error
	for _, h := range hosts {
		if want != "" {
			if err := c.fits(ctx, h, want); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.addr, err))
				continue
			}
		}
		for _, t := range h.targets {
			conn, err := c.dial(ctx, t)
			if err == nil {
				c.metrics.upstreamConnects.WithLabelValues(h.addr).Inc()
				return conn, t, nil
			}
			c.metrics.upstreamErrors.WithLabelValues(h.addr).Inc()
			errs = append(errs, fmt.Errorf("%s: %w", t, err))
			if ctx.Err() != nil {
				return nil, upstreamTarget{}, errors.Join(errs...)
			}
		}
	}
	return nil, upstreamTarget{}, errors.Join(errs...)
}

// fits says why h cannot take a session that wants role, or nil.
func (c *connector) fits(ctx context.Context, h *upstreamHost, want string) error {
	standby, readOnly, err := c.role(ctx, h)
	if err != nil {
		return fmt.Errorf("cannot tell its role: %w", err)
	}
	switch {
	case want == "primary" && standby:
		return errors.New("server is in hot standby mode (target_session_attrs=primary)")
	case want == "standby" && !standby:
		return errors.New("server is not in hot standby mode (target_session_attrs=standby)")
	case want == "read-write" && readOnly:
		return errors.New("session is read-only (target_session_attrs=read-write)")
	case want == "read-only" && !readOnly:
		return errors.New("session is not read-only (target_session_attrs=read-only)")
	}
	return nil
}

// role returns h's role as last learnt, asking again when the answer is
// older than roleTTL.
func (c *connector) role(ctx context.Context, h *upstreamHost) (standby, readOnly bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.checked) < roleTTL {
		return h.standby, h.readOnly, h.err
	}
	h.standby, h.readOnly, h.err = c.ask(ctx, h)
	h.checked = time.Now()
	return h.standby, h.readOnly, h.err
}

// ask runs roleQuery on h over pgcloak's own connection to it (kept open
// between questions), connecting first when there is none. A kept
// connection that fails is replaced once: the server may have restarted.
// h.mu is held.
func (c *connector) ask(ctx context.Context, h *upstreamHost) (standby, readOnly bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		kept := h.conn != nil && !h.conn.IsClosed()
		if !kept {
			if h.conn, err = c.probeConnect(ctx, h); err != nil {
				c.metrics.upstreamErrors.WithLabelValues(h.addr).Inc()
				return false, false, err
			}
		}
		res, err := h.conn.Exec(ctx, roleQuery).ReadAll()
		if err != nil || c.closed.Load() {
			// Broken, or a reload replaced this connector meanwhile:
			// keep nothing open.
			h.conn.Close(context.Background())
			h.conn = nil
		}
		if err != nil && kept && attempt == 0 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return false, false, err
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
			return false, false, errors.New("unexpected answer to " + roleQuery)
		}
		row := res[0].Rows[0]
		return string(row[0]) == "t", string(row[1]) == "on", nil
	}
}

// probeConnect opens pgcloak's own connection to h: admin_dsn's user,
// password and database, h's address and TLS settings.
func (c *connector) probeConnect(ctx context.Context, h *upstreamHost) (*pgconn.PgConn, error) {
	cfg := c.probe.Copy()
	first := h.targets[0]
	cfg.Host, cfg.Port, cfg.TLSConfig = first.host, first.port, first.tls
	cfg.Fallbacks = nil
	for _, t := range h.targets[1:] {
		cfg.Fallbacks = append(cfg.Fallbacks, &pgconn.FallbackConfig{Host: t.host, Port: t.port, TLSConfig: t.tls})
	}
	cfg.ValidateConnect = nil
	cfg.ConnectTimeout = c.dialTimeout
	return pgconn.ConnectConfig(ctx, cfg)
}

// hostInfo reports what is known of every host.
func (c *connector) hostInfo() []HostInfo {
	out := make([]HostInfo, 0, len(c.hosts))
	for _, h := range c.hosts {
		h.mu.Lock()
		hi := HostInfo{Addr: h.addr, Checked: h.checked, ReadOnly: h.readOnly}
		switch {
		case h.checked.IsZero():
		case h.err != nil:
			hi.Role, hi.Error = "unreachable", h.err.Error()
		case h.standby:
			hi.Role = "standby"
		default:
			hi.Role = "primary"
		}
		h.mu.Unlock()
		out = append(out, hi)
	}
	return out
}

// close closes pgcloak's own connections to the hosts. Sessions keep
// theirs.
func (c *connector) close() {
	c.closed.Store(true)
	for _, h := range c.hosts {
		h.mu.Lock()
		if h.conn != nil {
			h.conn.Close(context.Background())
			h.conn = nil
		}
		h.mu.Unlock()
	}
}
