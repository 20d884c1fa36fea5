package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
)

// sslRequestCode and friends are the special protocol version numbers of the
// pre-startup requests (PostgreSQL src/include/libpq/pqcomm.h).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// upstreamTarget is one way to reach PostgreSQL: an address and whether to
// ask for TLS there. The upstream setting expands into a list of them
// (several hosts, and sslmode=prefer/allow fallbacks), tried in order.
type upstreamTarget struct {
	network, addr string
	host          string // as written in the upstream setting
	port          uint16
	tls           *tls.Config // nil: plaintext
}

func (t upstreamTarget) String() string {
	if t.tls != nil {
		return t.addr + " (TLS)"
	}
	return t.addr
}

// connector dials PostgreSQL as the upstream setting says. It is shared by
// all sessions; a reload makes a new one. Hosts are picked as libpq picks
// them (upstream.go): in order or at random (load_balance_hosts), by role
// (target_session_attrs).
type connector struct {
	hosts       []*upstreamHost // distinct addresses, in the order written
	dialTimeout time.Duration
	routing     config.Routing
	// probe is admin_dsn's connection settings, used to ask each host its
	// role; nil when target_session_attrs is any.
	probe   *pgconn.Config
	metrics *opsMetrics
	closed  atomic.Bool // replaced by a reload, or the server closed
}

// newConnector parses the upstream setting (libpq keyword/value or URL form)
// with pgconn, which implements libpq's sslmode rules, hosts and ports.
func newConnector(cfg *config.Config, m *opsMetrics) (*connector, error) {
	pc, err := pgconn.ParseConfig(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	c := &connector{dialTimeout: cfg.Limits.LoginTimeout, routing: config.UpstreamRouting(cfg.Upstream), metrics: m}
	if pc.ConnectTimeout > 0 {
		c.dialTimeout = pc.ConnectTimeout
	}
	add := func(host string, port uint16, tc *tls.Config) {
		network, addr := pgconn.NetworkAddress(host, port)
		t := upstreamTarget{network: network, addr: addr, host: host, port: port, tls: tc}
		for _, h := range c.hosts {
			if h.addr == addr {
				h.targets = append(h.targets, t)
				return
			}
		}
		c.hosts = append(c.hosts, &upstreamHost{addr: addr, targets: []upstreamTarget{t}})
	}
	add(pc.Host, pc.Port, pc.TLSConfig)
	for _, fb := range pc.Fallbacks {
		add(fb.Host, fb.Port, fb.TLSConfig)
	}
	if c.routing.TargetSessionAttrs != "any" {
		if c.probe, err = pgconn.ParseConfig(cfg.AdminDSN); err != nil {
			return nil, fmt.Errorf("admin_dsn: %w", err)
		}
	}
	return c, nil
}

func (c *connector) dial(ctx context.Context, t upstreamTarget) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	if t.tls == nil {
		return conn, nil
	}
	tlsConn, err := startTLS(ctx, conn, t.tls)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tlsConn, nil
}

// startTLS sends SSLRequest and performs the TLS handshake when the server
// answers 'S'. The answer is read with an exact one-byte read, so any bytes a
// server (or a man in the middle) sent after it are not taken as plaintext
// protocol data: they reach the TLS handshake, which rejects them
// (CVE-2021-23222).
func startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	req := []byte{0, 0, 0, 8, 0, 0, 0, 0}
	putUint32(req[4:], sslRequestCode)
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, fmt.Errorf("reading answer to SSLRequest: %w", err)
	}
	switch answer[0] {
	case 'S':
	case 'N':
		return nil, errors.New("server does not support TLS")
	default:
		return nil, fmt.Errorf("invalid answer %q to SSLRequest", answer[0])
	}
	tlsConn := tls.Client(conn, cfg)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tlsConn, nil
}

func putUint32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// weakness says how t reaches PostgreSQL without checking whom it talks to
// ("" when it checks, or when t is this machine: a unix socket or a
// loopback address, where the traffic never leaves the host).
func (t upstreamTarget) weakness() string {
	if t.network == "unix" {
		return ""
	}
	host, _, err := net.SplitHostPort(t.addr)
	if err != nil {
		host = t.addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return ""
	}
	switch {
	case t.tls == nil:
		return t.addr + " in plaintext"
	case t.tls.InsecureSkipVerify && t.tls.VerifyPeerCertificate == nil:
		return t.addr + " over TLS without checking its certificate"
	case t.tls.InsecureSkipVerify:
		return t.addr + " over TLS without checking the host name (verify-ca)"
	}
	return ""
}

// warnUnverified logs, at start, the ways the connection string key (its
// targets) reaches a PostgreSQL server on another host without verifying
// it: sslmode below verify-full. A machine in the path could then read and
// change the traffic, ciphertext and statements alike.
func warnUnverified(log *zap.Logger, key string, targets []upstreamTarget) {
	var weak []string
	for _, t := range targets {
		if w := t.weakness(); w != "" {
			weak = append(weak, w)
		}
	}
	if len(weak) > 0 {
		log.Warn(key+" does not verify the PostgreSQL server it reaches: anyone on the network path can read and alter the traffic; "+
			"set sslmode=verify-full with sslrootcert=FILE (the CA that signs the server's certificate) or sslrootcert=system",
			zap.Strings("reached", weak))
	}
}

// targets are every way c reaches PostgreSQL, host by host.
func (c *connector) targets() []upstreamTarget {
	var out []upstreamTarget
	for _, h := range c.hosts {
		out = append(out, h.targets...)
	}
	return out
}

// describe lists the targets for messages, e.g. "127.0.0.1:5432 (TLS)".
func (c *connector) describe() string {
	s := ""
	for _, h := range c.hosts {
		for _, t := range h.targets {
			if s != "" {
				s += ", "
			}
			s += t.String()
		}
	}
	if c.routing.TargetSessionAttrs != "any" {
		s += " target_session_attrs=" + c.routing.TargetSessionAttrs
	}
	if c.routing.LoadBalanceHosts != "disable" {
		s += " load_balance_hosts=" + c.routing.LoadBalanceHosts
	}
	return s
}
