package mysql

import (
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Error codes the gateway answers with itself (MySQL's numbers, so that clients and their users
// recognise them).
const (
	codeAccessDenied   = gomysql.ER_ACCESS_DENIED_ERROR      // 1045: wrong password or token
	codeBadDB          = gomysql.ER_BAD_DB_ERROR             // 1049: unknown target
	codeDeniedByPolicy = gomysql.ER_TABLEACCESS_DENIED_ERROR // 1142: a policy or guardrail refuses
	codeUnknownCommand = gomysql.ER_UNKNOWN_COM_ERROR        // 1047: a command the gateway does not relay
	codeNotAllowed     = gomysql.ER_NOT_ALLOWED_COMMAND      // 1148: LOAD DATA LOCAL refused
	codeServerShutdown = gomysql.ER_SERVER_SHUTDOWN          // 1053: the gateway ends the session
	codePacketTooLarge = gomysql.ER_NET_PACKET_TOO_LARGE     // 1153
	codeHandshake      = gomysql.ER_HANDSHAKE_ERROR          // 1043: bad connection phase
	// codeSecureTransport is MySQL's ER_SECURE_TRANSPORT_REQUIRED.
	codeSecureTransport = 3159
	// codeTargetDown is ER_CONNECT_TO_FOREIGN_DATA_SOURCE: a server's own error for a remote
	// server it cannot reach. (The client library's 2003 would fit the words, but clients
	// reject 2xxx codes from a server as a malformed packet.)
	codeTargetDown = 1429
	// codeRecording is ER_ERROR_ON_WRITE: the recording could not be written.
	codeRecording = gomysql.ER_ERROR_ON_WRITE
	// codeMasking is ER_UNKNOWN_ERROR (HY000): a row masking applies to could not be parsed,
	// so the gateway withholds it.
	codeMasking = gomysql.ER_UNKNOWN_ERROR
)

// myError is an error the client is told in an ERR packet.
type myError struct {
	code  uint16
	state string // SQLSTATE, 5 characters
	msg   string
}

func (e *myError) Error() string { return e.msg }

func newError(code uint16, msg string) *myError {
	state := gomysql.MySQLState[code]
	if state == "" {
		state = gomysql.DEFAULT_MYSQL_STATE
	}
	switch code {
	case codeSecureTransport:
		state = "HY000"
	}
	return &myError{code: code, state: state, msg: msg}
}

// payload encodes the ERR packet's payload (protocol 4.1 form).
func (e *myError) payload() []byte {
	b := make([]byte, 0, 9+len(e.msg))
	b = append(b, gomysql.ERR_HEADER)
	b = binary.LittleEndian.AppendUint16(b, e.code)
	b = append(b, '#')
	st := e.state
	if len(st) != 5 {
		st = gomysql.DEFAULT_MYSQL_STATE
	}
	b = append(b, st...)
	return append(b, e.msg...)
}

// decodeErr decodes an ERR packet's payload (protocol 4.1, with SQLSTATE marker).
func decodeErr(p []byte) (code uint16, state, msg string, ok bool) {
	if len(p) < 3 || p[0] != gomysql.ERR_HEADER {
		return 0, "", "", false
	}
	code = binary.LittleEndian.Uint16(p[1:])
	rest := p[3:]
	if len(rest) >= 6 && rest[0] == '#' {
		state, rest = string(rest[1:6]), rest[6:]
	}
	return code, state, string(rest), true
}
