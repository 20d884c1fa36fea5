package proxy

import (
	"crypto/tls"

	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
)

// live is the part of the configuration that a reload changes: each new
// connection reads it once, when it is accepted, and keeps it; sessions
// already running keep what they started with (their upstream connection,
// their TLS session).
type live struct {
	cfg       *config.Config
	connector *connector
	tls       *tls.Config // client leg; nil: answer SSLRequest with 'N'
}

func (s *Server) newLive(cfg *config.Config) (*live, error) {
	conn, err := newConnector(cfg, s.ops)
	if err != nil {
		return nil, err
	}
	l := &live{cfg: cfg, connector: conn}
	if cfg.TLS != nil {
		if l.tls, err = serverTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	for _, h := range conn.hosts {
		// Every host shows in /metrics from the start, at 0.
		s.ops.upstreamErrors.WithLabelValues(h.addr)
		s.ops.upstreamConnects.WithLabelValues(h.addr)
	}
	return l, nil
}

// settings returns the configuration in force for new connections.
func (s *Server) settings() *live { return s.live.Load() }

// limits are the limits in force for new connections.
func (s *Server) limits() config.Limits { return s.live.Load().cfg.Limits }

// Config returns the configuration in force for new connections.
func (s *Server) Config() *config.Config { return s.live.Load().cfg }

// HostInfo reports what the server knows of each upstream host.
func (s *Server) HostInfo() []HostInfo { return s.live.Load().connector.hostInfo() }

// PrepareReload checks that cfg can become the configuration of new
// connections (the upstream setting, the client-leg certificate, key and
// CA) and returns the function that makes it so. Nothing changes until
// commit runs; commit never fails. It covers upstream (hosts, TLS,
// routing), tls, limits (the caps on logins, sessions, buffered messages and
// CancelRequests apply from the next one on), admin_users and
// admin_auth_database; sessions already running keep their connections. listen is not reloadable: the
// caller keeps it as it was (Serve listens where it started).
func (s *Server) PrepareReload(cfg *config.Config) (commit func(), err error) {
	l, err := s.newLive(cfg)
	if err != nil {
		return nil, err
	}
	return func() {
		old := s.live.Swap(l)
		old.connector.close()
		s.guard.setLimits(cfg.Limits)
		s.log.Info("new connections use the reloaded configuration", zap.String("upstream", l.connector.describe()))
	}, nil
}
