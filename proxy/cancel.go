package proxy

import (
	"context"
	"net"
	"time"

	"go.uber.org/zap"
)

// cancelTimeout bounds how long forwarding one CancelRequest may take.
const cancelTimeout = 5 * time.Second

// register makes a session reachable by its cancel key.
func (s *Server) register(ss *session) {
	if ss.cancelKey == "" {
		return
	}
	s.mu.Lock()
	s.sessions[ss.cancelKey] = ss
	s.mu.Unlock()
}

func (s *Server) unregister(ss *session) {
	if ss.cancelKey == "" {
		return
	}
	s.mu.Lock()
	if s.sessions[ss.cancelKey] == ss {
		delete(s.sessions, ss.cancelKey)
	}
	s.mu.Unlock()
}

// handleCancel forwards a CancelRequest to the upstream of the session whose
// BackendKeyData it carries. BackendKeyData passes through unchanged, so the
// key is PostgreSQL's own; a key that matches no live session of this
// pgcloak is dropped, so a client can cancel its own queries and nothing
// else. As in PostgreSQL, the sender gets no answer either way. Requests
// from a source address beyond limits.cancel_rate are dropped unread, so
// guessing a key's 32-bit secret takes years, not hours.
func (s *Server) handleCancel(pkt []byte, from net.Addr) {
	if !s.guard.cancels.allow(from) {
		s.metrics.cancels.WithLabelValues("rate_limited").Inc()
		return
	}
	key := string(pkt[8:])
	s.mu.Lock()
	ss := s.sessions[key]
	s.mu.Unlock()
	if ss == nil {
		s.metrics.cancels.WithLabelValues("unknown_key").Inc()
		s.log.Info("CancelRequest for no known session dropped")
		return
	}
	s.forwardCancel(ss.target, key)
}

// forwardCancel sends a CancelRequest with key to target over a new
// connection, negotiating TLS as the session did.
func (s *Server) forwardCancel(target upstreamTarget, key string) {
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	conn, err := s.settings().connector.dial(ctx, target)
	if err != nil {
		s.metrics.cancels.WithLabelValues("failed").Inc()
		s.log.Warn("forwarding CancelRequest failed", zap.Stringer("upstream", target), zap.Error(err))
		return
	}
	defer conn.Close()
	pkt := make([]byte, 8, 8+len(key))
	putUint32(pkt, uint32(8+len(key)))
	putUint32(pkt[4:], cancelRequestCode)
	pkt = append(pkt, key...)
	_ = conn.SetDeadline(time.Now().Add(cancelTimeout))
	if _, err := conn.Write(pkt); err != nil {
		s.metrics.cancels.WithLabelValues("failed").Inc()
		return
	}
	// Wait for the server to close, so the cancel has been processed
	// before we return (libpq does the same).
	var b [1]byte
	_, _ = conn.Read(b[:])
	s.metrics.cancels.WithLabelValues("forwarded").Inc()
}
