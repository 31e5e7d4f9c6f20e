package postgres

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATEs the gateway itself answers with.
const (
	codeInvalidPassword     = "28P01" // invalid_password
	codeInvalidAuthSpec     = "28000" // invalid_authorization_specification
	codeInvalidCatalog      = "3D000" // invalid_catalog_name: unknown target
	codeInsufficientPriv    = "42501" // insufficient_privilege: policy
	codeCannotConnect       = "08001" // sqlclient_unable_to_establish_sqlconnection
	codeConnectionFailure   = "08006" // connection_failure
	codeProtocolViolation   = "08P01" // protocol_violation
	codeFeatureNotSupported = "0A000"
	codeAdminShutdown       = "57P01" // admin_shutdown
	codeCannotConnectNow    = "57P03" // cannot_connect_now
	codeIOError             = "58030" // io_error: recording failed
)

// pgError is an error the client sees as an ErrorResponse.
type pgError struct {
	Severity string // FATAL or ERROR
	Code     string
	Message  string
	Detail   string
	Hint     string
}

func (e *pgError) Error() string { return e.Code + ": " + e.Message }

func fatal(code, msg, hint string) *pgError {
	return &pgError{Severity: "FATAL", Code: code, Message: msg, Hint: hint}
}

// encode appends the ErrorResponse.
func (e *pgError) encode(dst []byte) []byte {
	msg := &pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.Severity, Code: e.Code,
		Message: e.Message, Detail: e.Detail, Hint: e.Hint}
	out, err := msg.Encode(dst)
	if err != nil {
		return dst
	}
	return out
}

// upstreamError turns a failure to reach the target into what the client sees: the target's
// own ErrorResponse when it sent one (e.g. an unknown database), 08001 otherwise.
func upstreamError(target string, err error) *pgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		hint := pe.Hint
		if strings.HasPrefix(pe.Code, "28") {
			// Not the user's password: the gateway's own credential for the target.
			hint = "The target refused the gateway's own credential for it (not yours); an administrator must fix the target's username or password in the gateway."
		}
		return &pgError{Severity: "FATAL", Code: pe.Code, Message: "target " + target + ": " + pe.Message, Detail: pe.Detail, Hint: hint}
	}
	if ae, ok := viaAgent(err); ok {
		// The agent's own handshake failed (its credential, its network) or no agent is there.
		code, hint := codeCannotConnect, "The target is reached through an agent: `airlock agents list` shows which agents are connected and the targets they serve."
		if ae.Code != "" {
			code = ae.Code
			if strings.HasPrefix(code, "28") {
				hint = "The target refused the agent's own credential for it (not yours); an administrator must fix the target's username or password in the agent's config."
			}
		}
		return &pgError{Severity: "FATAL", Code: code, Message: "could not connect to target " + target + ": " + err.Error(), Hint: hint}
	}
	hint := "Check that the target is running and reachable from the gateway."
	var ne net.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr):
		hint = "The target's TLS certificate could not be verified: check the target's ca_file and tls mode in the gateway."
	case errors.As(err, &ne) && ne.Timeout():
		hint = "The target did not answer in time. " + hint
	}
	return &pgError{Severity: "FATAL", Code: codeCannotConnect, Message: "could not connect to target " + target + ": " + err.Error(), Hint: hint}
}
