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
		return nil, &protocolError{fmt.Sprintf("invalid length of startup packet (%d bytes; at most %d)", n, maxStartupPacket)}
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(conn, pkt[4:]); err != nil {
		return nil, unexpectedEOF(err)
	}
	return pkt, nil
}

// startupParams are the parameters of a StartupMessage that pgcloak reads
// (for logs and metrics). The message itself is forwarded untouched.
type startupParams struct {
	user, database, application string
	// searchPath is search_path as set by the startup message (directly or
	// in options), nil when not set.
	searchPath []string
	// settings are the unreported settings that shape values
	// (extra_float_digits, bytea_output) as the startup message sets them.
	settings map[string]string
}

// parseStartupParams reads the name/value pairs of a StartupMessage body.
func parseStartupParams(pkt []byte) (startupParams, error) {
	var p startupParams
	b := pkt[8:]
	for len(b) > 0 && b[0] != 0 {
		name, rest, ok := bytes.Cut(b, []byte{0})
		if !ok {
			return p, &protocolError{"invalid startup packet layout: expected terminator as last byte"}
		}
		value, rest, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return p, &protocolError{"invalid startup packet layout: expected terminator as last byte"}
		}
		switch string(name) {
		case "user":
			p.user = string(value)
		case "database":
			p.database = string(value)
		case "application_name":
			p.application = string(value)
		case "search_path":
			p.searchPath = splitSearchPath(string(value))
		case "extra_float_digits", "bytea_output":
			p.set(string(name), string(value))
		case "options":
			if sp, ok := optionSetting(string(value), "search_path"); ok {
				p.searchPath = splitSearchPath(sp)
			}
			for _, s := range unreportedSettings {
				if v, ok := optionSetting(string(value), s); ok {
					p.set(s, v)
				}
			}
		}
		b = rest
	}
	if len(b) != 1 {
		return p, &protocolError{"invalid startup packet layout: expected terminator as last byte"}
	}
	if p.database == "" {
		p.database = p.user
	}
	return p, nil
}

func (p *startupParams) set(name, value string) {
	if p.settings == nil {
		p.settings = map[string]string{}
	}
	p.settings[name] = value
}

// negotiate runs the pre-startup exchange of a client connection: SSLRequest
// (TLS terminated here when a certificate is configured, else 'N'),
// GSSENCRequest ('N', once) and CancelRequest. It returns the connection to
// use from now on (TLS-wrapped or not) and the StartupMessage, or a nil
// packet when the connection is done (a CancelRequest was handled).
func (s *Server) negotiate(conn net.Conn) (net.Conn, []byte, bool, error) {
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
				return conn, nil, tlsDone, &protocolError{"unexpected SSLRequest"}
			}
			if s.tls == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, tlsDone, err
				}
				continue
			}
			// The client must wait for our answer before it sends anything
			// else; bytes already here would be read as if they had come
			// over TLS (CVE-2021-23214).
			if pendingBytes(conn) {
				return conn, nil, tlsDone, &protocolError{"received unencrypted data after SSL request"}
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, tlsDone, err
			}
			tc := tls.Server(conn, s.tls)
			if err := tc.Handshake(); err != nil {
				s.metrics.errors.WithLabelValues("tls").Inc()
				return conn, nil, tlsDone, &tlsError{err}
			}
			conn, tlsDone = tc, true
		case gssEncRequestCode:
			if gssDone || len(pkt) != 8 {
				return conn, nil, tlsDone, &protocolError{"unexpected GSSENCRequest"}
			}
			gssDone = true
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, tlsDone, err
			}
		case cancelRequestCode:
			s.handleCancel(pkt)
			return conn, nil, tlsDone, nil
		default:
			if major := code >> 16; major != 3 {
				return conn, nil, tlsDone, &unsupportedProtocolError{code}
			}
			return conn, pkt, tlsDone, nil
		}
	}
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
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}

// loginDeadline is when a client that has not finished startup is closed.
func (s *Server) loginDeadline(start time.Time) time.Time {
	return start.Add(s.cfg.Limits.LoginTimeout)
}
