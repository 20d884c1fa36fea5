// Package wire is pgcloak's vocabulary of the PostgreSQL frontend/backend
// protocol (protocol version 3): typed message codes per direction, the frame
// reader that splits a byte stream into messages without copying them, and
// zero-copy walkers and appenders for the few messages pgcloak reads or
// writes itself on its hot paths (Bind, DataRow). pgx's pgproto3 decodes the
// rest where a copy does not matter.
//
// The same byte means different messages in each direction ('D' is Describe
// from the client and DataRow from the server; 'C' Close and CommandComplete;
// 'S' Sync and ParameterStatus; 'E' Execute and ErrorResponse), so codes are
// typed by direction: a ClientMsg never compares equal to a ServerMsg.
package wire

import "fmt"

// HeaderLen is the size of a regular message header: a type byte and an
// int32 length that counts itself but not the type byte.
const HeaderLen = 5

// ClientMsg is the type byte of a message from the client (frontend).
type ClientMsg byte

// Client (frontend) messages after startup
// (https://www.postgresql.org/docs/current/protocol-message-formats.html).
const (
	Bind         ClientMsg = 'B'
	Close        ClientMsg = 'C'
	CopyDataIn   ClientMsg = 'd'
	CopyDoneIn   ClientMsg = 'c'
	CopyFail     ClientMsg = 'f'
	Describe     ClientMsg = 'D'
	Execute      ClientMsg = 'E'
	Flush        ClientMsg = 'H'
	FunctionCall ClientMsg = 'F'
	Parse        ClientMsg = 'P'
	Password     ClientMsg = 'p' // also SASLInitialResponse, SASLResponse, GSSResponse
	Query        ClientMsg = 'Q'
	Sync         ClientMsg = 'S'
	Terminate    ClientMsg = 'X'
)

func (t ClientMsg) String() string {
	switch t {
	case Bind:
		return "Bind"
	case Close:
		return "Close"
	case CopyDataIn:
		return "CopyData"
	case CopyDoneIn:
		return "CopyDone"
	case CopyFail:
		return "CopyFail"
	case Describe:
		return "Describe"
	case Execute:
		return "Execute"
	case Flush:
		return "Flush"
	case FunctionCall:
		return "FunctionCall"
	case Parse:
		return "Parse"
	case Password:
		return "PasswordMessage"
	case Query:
		return "Query"
	case Sync:
		return "Sync"
	case Terminate:
		return "Terminate"
	}
	return fmt.Sprintf("client message %q", byte(t))
}

// ServerMsg is the type byte of a message from the server (backend).
type ServerMsg byte

// Server (backend) messages.
const (
	Authentication       ServerMsg = 'R'
	BackendKeyData       ServerMsg = 'K'
	BindComplete         ServerMsg = '2'
	CloseComplete        ServerMsg = '3'
	CommandComplete      ServerMsg = 'C'
	CopyBothResponse     ServerMsg = 'W'
	CopyDataOut          ServerMsg = 'd'
	CopyDoneOut          ServerMsg = 'c'
	CopyInResponse       ServerMsg = 'G'
	CopyOutResponse      ServerMsg = 'H'
	DataRow              ServerMsg = 'D'
	EmptyQueryResponse   ServerMsg = 'I'
	ErrorResponse        ServerMsg = 'E'
	FunctionCallResponse ServerMsg = 'V'
	NegotiateProtocol    ServerMsg = 'v'
	NoData               ServerMsg = 'n'
	NoticeResponse       ServerMsg = 'N'
	NotificationResponse ServerMsg = 'A'
	ParameterDescription ServerMsg = 't'
	ParameterStatus      ServerMsg = 'S'
	ParseComplete        ServerMsg = '1'
	PortalSuspended      ServerMsg = 's'
	ReadyForQuery        ServerMsg = 'Z'
	RowDescription       ServerMsg = 'T'
)

func (t ServerMsg) String() string {
	switch t {
	case Authentication:
		return "Authentication"
	case BackendKeyData:
		return "BackendKeyData"
	case BindComplete:
		return "BindComplete"
	case CloseComplete:
		return "CloseComplete"
	case CommandComplete:
		return "CommandComplete"
	case CopyBothResponse:
		return "CopyBothResponse"
	case CopyDataOut:
		return "CopyData"
	case CopyDoneOut:
		return "CopyDone"
	case CopyInResponse:
		return "CopyInResponse"
	case CopyOutResponse:
		return "CopyOutResponse"
	case DataRow:
		return "DataRow"
	case EmptyQueryResponse:
		return "EmptyQueryResponse"
	case ErrorResponse:
		return "ErrorResponse"
	case FunctionCallResponse:
		return "FunctionCallResponse"
	case NegotiateProtocol:
		return "NegotiateProtocolVersion"
	case NoData:
		return "NoData"
	case NoticeResponse:
		return "NoticeResponse"
	case NotificationResponse:
		return "NotificationResponse"
	case ParameterDescription:
		return "ParameterDescription"
	case ParameterStatus:
		return "ParameterStatus"
	case ParseComplete:
		return "ParseComplete"
	case PortalSuspended:
		return "PortalSuspended"
	case ReadyForQuery:
		return "ReadyForQuery"
	case RowDescription:
		return "RowDescription"
	}
	return fmt.Sprintf("server message %q", byte(t))
}
