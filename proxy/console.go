package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
)

// The admin console is the virtual database "pgcloak". PostgreSQL itself
// checks who may use it:
//
//	client                        pgcloak                           PostgreSQL
//	  │ StartupMessage database=pgcloak
//	  │                  user in admin_users? (else FATAL 28000)
//	  │                              │── StartupMessage database=admin_auth_database ──▶│
//	  │◀──────────── Authentication* (relayed as for any session) ──────────────────────│
//	  │ PasswordMessage/SASL* ─────────────────────────────────────────────────────────▶│
//	  │◀──── AuthenticationOk, ParameterStatus*, BackendKeyData, ReadyForQuery ──────────│
//	  │                              │── close ──────────────────────────────────────▶│
//	  │ Query ──────────────────────▶│ answered by the console itself (proxy/admin)
//
// The upstream connection lives only for the login: the console's commands
// never reach PostgreSQL. The client keeps the upstream's BackendKeyData;
// a CancelRequest with it matches no session and is dropped.

// Console serves the admin console's sessions (proxy/admin implements it).
type Console interface {
	// Serve runs one console session on conn after PostgreSQL has
	// authenticated the user and its answers up to the first ReadyForQuery
	// have reached the client. It answers the messages read from in (what
	// pgcloak read ahead, then conn) until the client terminates or conn
	// is closed. The relay closes conn after Serve returns.
	Serve(conn net.Conn, in io.Reader, info SessionInfo)
}

// consoleLogin checks a console login before anything reaches PostgreSQL:
// the user must be in admin_users. It returns the startup packet to send
// upstream (to admin_auth_database) and true, or nil after telling the
// client why not.
func (s *Server) consoleLogin(c net.Conn, pkt []byte, info SessionInfo, conf *live) ([]byte, bool) {
	switch {
	case len(conf.cfg.AdminUsers) == 0:
		s.reject(c, "console", pgerrcode.InvalidAuthorizationSpecification, "the admin console is off: no role is listed in admin_users")
	case !slices.Contains(conf.cfg.AdminUsers, info.User):
		s.log.Warn("console login refused: role not in admin_users", zap.String("user", info.User), zap.String("client", info.ClientAddr))
		s.reject(c, "console", pgerrcode.InvalidAuthorizationSpecification, "role \""+info.User+"\" may not use the admin console (admin_users)")
	case info.Replication != "":
		s.reject(c, "console", pgerrcode.FeatureNotSupported, "the admin console does not take replication connections")
	default:
		return withDatabase(pkt, conf.cfg.AdminAuthDatabase), true
	}
	return nil, false
}

// withDatabase returns a copy of the StartupMessage pkt whose database
// parameter is db.
func withDatabase(pkt []byte, db string) []byte {
	out := make([]byte, 8, len(pkt)+len(db)+16)
	copy(out, pkt[:8])
	b := pkt[8:]
	for len(b) > 0 && b[0] != 0 {
		name, rest, _ := bytes.Cut(b, []byte{0})
		value, rest, _ := bytes.Cut(rest, []byte{0})
		if string(name) != "database" {
			out = append(append(append(append(out, name...), 0), value...), 0)
		}
		b = rest
	}
	out = append(append(append(out, "database\x00"...), db...), 0, 0)
	binary.BigEndian.PutUint32(out, uint32(len(out)))
	return out
}

// serveConsole hands an authenticated console login to the console: the
// upstream connection is closed first.
func (s *Server) serveConsole(ss *session) {
	ss.server.Close()
	_ = ss.client.SetDeadline(time.Time{})
	ss.log.Info("console session", zap.String("upstream_auth", ss.target.String()))
	in := io.MultiReader(bytes.NewReader(bytes.Clone(ss.fromClient.Rest())), ss.client)
	s.console.Serve(ss.client, in, ss.info)
}
