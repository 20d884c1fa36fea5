package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH
// (src/include/libpq/pqcomm.h): longer startup packets are refused.
const maxStartupPacket = 10000

// readStartupPacket reads one untyped pre-startup packet (StartupMessage,
// SSLRequest, GSSENCRequest or CancelRequest) with exact reads, so nothing
// after it is consumed: whatever follows an SSLRequest stays in the socket
// where it can be detected.
func readStartupPacket(conn net.Conn) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return nil, &wire.ProtocolError{Msg: fmt.Sprintf("invalid length of startup packet (%d bytes; at most %d)", n, maxStartupPacket)}
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(conn, pkt[4:]); err != nil {
		return nil, wire.UnexpectedEOF(err)
	}
	return pkt, nil
}

// parseStartupParams reads what the relay needs of a StartupMessage's
// name/value pairs. The message itself is forwarded untouched.
func parseStartupParams(pkt []byte) (SessionInfo, error) {
	var p SessionInfo
	b := pkt[8:]
	for len(b) > 0 && b[0] != 0 {
		name, rest, ok := bytes.Cut(b, []byte{0})
		if !ok {
			return p, &wire.ProtocolError{Msg: "invalid startup packet layout: expected terminator as last byte"}
		}
		value, rest, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return p, &wire.ProtocolError{Msg: "invalid startup packet layout: expected terminator as last byte"}
		}
		switch string(name) {
		case "user":
			p.User = string(value)
		case "database":
			p.Database = string(value)
		case "application_name":
			p.ApplicationName = string(value)
		case "replication":
			p.Replication = string(value)
		}
		b = rest
	}
	if len(b) != 1 {
		return p, &wire.ProtocolError{Msg: "invalid startup packet layout: expected terminator as last byte"}
	}
	if p.Database == "" {
		p.Database = p.User
	}
	return p, nil
}

// negotiate runs the pre-startup exchange of a client connection: SSLRequest
// (TLS terminated here when a certificate is configured, else 'N'),
// GSSENCRequest ('N', once) and CancelRequest. It returns the connection to
// use from now on (TLS-wrapped or not) and the StartupMessage, or a nil
// packet when the connection is done (a CancelRequest was handled).
func (s *Server) negotiate(conn net.Conn, tlsConf *tls.Config) (net.Conn, []byte, bool, error) {
	var tlsDone, gssDone bool
	for {
		pkt, err := readStartupPacket(conn)
		if err != nil {
			return conn, nil, tlsDone, err
		}
		code := binary.BigEndian.Uint32(pkt[4:8])
		switch code {
		case sslRequestCode:
			if tlsDone || len(pkt) != 8 {
				return conn, nil, tlsDone, &wire.ProtocolError{Msg: "unexpected SSLRequest"}
			}
			if tlsConf == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, tlsDone, err
				}
				continue
			}
			// The client must wait for our answer before it sends anything
			// else; bytes already here would be read as if they had come
			// over TLS (CVE-2021-23214).
			if pendingBytes(conn) {
				return conn, nil, tlsDone, &wire.ProtocolError{Msg: "received unencrypted data after SSL request"}
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, tlsDone, err
			}
			tc := tls.Server(conn, tlsConf)
			if err := tc.Handshake(); err != nil {
				s.metrics.errors.WithLabelValues("tls").Inc()
				return conn, nil, tlsDone, &tlsError{err}
			}
			conn, tlsDone = tc, true
		case gssEncRequestCode:
			if gssDone || len(pkt) != 8 {
				return conn, nil, tlsDone, &wire.ProtocolError{Msg: "unexpected GSSENCRequest"}
			}
			gssDone = true
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, tlsDone, err
			}
		case cancelRequestCode:
			s.handleCancel(pkt, conn.RemoteAddr())
			return conn, nil, tlsDone, nil
		default:
			if major := code >> 16; major != 3 {
				return conn, nil, tlsDone, &unsupportedProtocolError{code}
			}
			return conn, pkt, tlsDone, nil
		}
	}
}

// clientTLSRefusal is the error (code and message) for a client that
// finished the pre-startup exchange without TLS (tlsDone false) when
// tls.client_mode requires it; "" when it may go on.
func clientTLSRefusal(t *config.TLS, tlsDone bool) (code, msg string) {
	if tlsDone {
		return "", ""
	}
	switch m := t.Mode(); m {
	case config.ClientTLSRequire:
		return pgerrcode.InvalidAuthorizationSpecification, "TLS is required (tls.client_mode require): connect with sslmode=require or stronger"
	case config.ClientTLSVerifyCA, config.ClientTLSVerifyFull:
		return pgerrcode.InvalidAuthorizationSpecification, "TLS with a client certificate is required (tls.client_mode " + m + ")"
	}
	return "", ""
}

// clientCertRefusal is, under tls.client_mode verify-full, the error for a
// client whose certificate's common name is not the user it logs in as
// (PostgreSQL's clientcert=verify-full); "" when it may go on.
func clientCertRefusal(c net.Conn, t *config.TLS, user string) (code, msg string) {
	if t.Mode() != config.ClientTLSVerifyFull {
		return "", ""
	}
	cn := ""
	if tc, ok := c.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			cn = certs[0].Subject.CommonName
		}
	}
	if cn == user {
		return "", ""
	}
	return pgerrcode.InvalidAuthorizationSpecification,
		fmt.Sprintf("certificate authentication failed for user %q: the client certificate is for %q (tls.client_mode verify-full)", user, cn)
}

type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake with client: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

type unsupportedProtocolError struct{ code uint32 }

func (e *unsupportedProtocolError) Error() string {
	return fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", e.code>>16, e.code&0xffff)
}

// isBenign reports errors that are an ordinary end of a connection.
func isBenign(err error) bool {
	return err == nil || err == errDrained || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}

// loginDeadline is when a client that has not finished startup is closed.
func (s *Server) loginDeadline(start time.Time) time.Time {
	return start.Add(s.limits().LoginTimeout)
}
