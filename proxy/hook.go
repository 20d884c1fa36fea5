package proxy

import (
	"bufio"

	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Hooks is the seam between the relay and whatever looks into sessions (the
// encryption engine, proxy/engine). The relay knows nothing of encryption:
// it asks Hooks for a Hook per session and passes that session's messages
// through it.
type Hooks interface {
	// Session returns the hook of a new session, before the connection to
	// PostgreSQL is made: nil to relay the session untouched (another
	// database), or an error (a *pgerr.Error) that refuses the session with
	// FATAL. It is called from the session's goroutine.
	Session(s SessionInfo) (Hook, error)
	// Ready reports whether sessions can be served, and if not, why (for
	// /readyz). It may be called from any goroutine.
	Ready() (bool, string)
}

// SessionInfo is what the relay knows of a session when it starts.
type SessionInfo struct {
	// User and Database are the StartupMessage's (the database defaults to
	// the user, as in PostgreSQL). The user is authenticated only once
	// Hook.Started runs.
	User, Database string
	// ApplicationName is the StartupMessage's application_name.
	ApplicationName string
	// Replication is the StartupMessage's replication parameter ("" when
	// absent): a physical or logical replication connection.
	Replication string
	// ClientAddr is the client's address.
	ClientAddr string
	// TLS reports whether the client leg is TLS.
	TLS bool
	// CertSubject and CertCN are the subject (x509 Name.String, e.g.
	// "CN=desk-1,O=Example") and common name of the client's certificate,
	// set only when pgcloak verified it against tls.client_ca_file.
	CertSubject, CertCN string

	// console: the session is the admin console's login (console.go).
	console bool
}

// Hook intercepts the messages of one session.
//
// Goroutines: StartupMessage and Started run on the session's goroutine
// before the relay loops start. After that the client loop (client →
// server) calls ClientWants, ClientMessage and ClientGone, and the server
// loop (server → client) calls ServerWants and ServerMessage, concurrently
// with each other. A Hook synchronizes its own state between the two loops.
//
// Messages: msg is the whole message, header included. It aliases the
// relay's read buffer (or a scratch buffer for large messages) and is valid
// only until the call returns. The hook writes what the peer should receive
// instead to w (nothing, the message unchanged, or other messages); the
// relay flushes w at protocol boundaries. Messages the hook does not want are
// forwarded untouched, streamed whatever their size.
//
// Errors: an error returned by ClientMessage or ServerMessage ends the
// session. A *pgerr.Error is sent to the client first as FATAL (a
// wire.ProtocolError as 08P01); other errors (a connection gone) are not.
type Hook interface {
	// StartupMessage sees each ParameterStatus and BackendKeyData of the
	// authentication phase (they are forwarded to the client as they are).
	StartupMessage(t wire.ServerMsg, msg []byte)
	// Started runs once the server's first ReadyForQuery has been relayed,
	// before any client message is read: the session is authenticated. It
	// may exchange messages with the server (and must leave it idle).
	Started(x Exchange) error
	// ClientWants reports whether ClientMessage must see messages of type t.
	ClientWants(t wire.ClientMsg) bool
	// ClientMessage handles a client message; w leads to the server.
	ClientMessage(t wire.ClientMsg, msg []byte, w *bufio.Writer) error
	// ClientRefused is called instead of ClientMessage for a message of
	// type t that the relay could not hold whole
	// (limits.message_buffer_budget): the message has been read and
	// dropped, and head holds its first bytes (header included, at most
	// 1 KiB). The hook answers the client with err in the message's place,
	// keeping its pipeline in order; w leads to the server, which must not
	// act on the message. An error returned ends the session.
	ClientRefused(t wire.ClientMsg, head []byte, err error, w *bufio.Writer) error
	// ClientGone is called when the client's side ended (it went away, or
	// sent something the relay refused); w leads to the server, so that the
	// hook can keep the server from acting on half a request (CopyFail).
	ClientGone(w *bufio.Writer)
	// ServerWants reports whether ServerMessage must see messages of type t.
	ServerWants(t wire.ServerMsg) bool
	// ServerMessage handles a server message; w leads to the client.
	ServerMessage(t wire.ServerMsg, msg []byte, w *bufio.Writer) error
	// ServerGone is called by the server loop when it ends: the hook must
	// not keep the client loop waiting for answers that will not come.
	ServerGone()
}

// ServerIdler is implemented by a Hook that may hold server messages back
// after ServerMessage returns (the engine decrypts the rows of a wide result
// on several cores and writes them in order). Both methods are called by the
// server loop only.
type ServerIdler interface {
	// ServerHolding reports whether messages are held back.
	ServerHolding() bool
	// ServerIdle writes what is held back to w: the server loop is about
	// to wait for the server, with nothing left to read. An error ends the
	// session as one from ServerMessage does.
	ServerIdle(w *bufio.Writer) error
}

// Exchange is the server leg while Hook.Started runs.
type Exchange interface {
	// Send writes a message to the server (buffered; Receive flushes).
	Send(msg []byte) error
	// Receive returns the next whole message from the server; it is valid
	// until the next call.
	Receive() (wire.ServerMsg, []byte, error)
}
