package auth

import (
	"errors"
	"fmt"
)

// Reasons a credential is refused. They go into the audit log and the gateway log, never to the
// client, which only learns that the credentials were bad. Like audit actions they are part of
// the stored format: never rename one.
const (
	ReasonUnknownUser    = "unknown_user"
	ReasonBadPassword    = "bad_password"
	ReasonMalformed      = "malformed"       // not a token or key of ours at all
	ReasonBadSignature   = "bad_signature"   // signed with another key, or tampered with
	ReasonExpired        = "expired"         // past its expiry
	ReasonNotYetValid    = "not_yet_valid"   // before its not-before
	ReasonRevoked        = "revoked"         // revoked by an admin or by logout
	ReasonWrongUser      = "wrong_user"      // issued to another user than the one logging in
	ReasonWrongIssuer    = "wrong_issuer"    // an IdP token from an issuer that is not configured
	ReasonWrongAudience  = "wrong_audience"  // an IdP token meant for another client
	ReasonBadAlgorithm   = "bad_algorithm"   // alg none, HMAC, or another algorithm not allowed
	ReasonUnknownKey     = "unknown_key"     // a kid the IdP does not publish
	ReasonIdPRefused     = "idp_refused"     // the IdP refused a refresh (session ended, user disabled)
	ReasonNotRefreshable = "not_refreshable" // a token without an IdP session behind it
	ReasonStoreError     = "store_error"     // revocations could not be checked: fail closed
)

// Failure is a refused credential with the reason why. It matches ErrBadCredentials with
// errors.Is, so that callers which only need "refused" need not know it.
type Failure struct {
	Reason string
	Detail string // for the log; may name the cause more precisely
}

func (f *Failure) Error() string {
	if f.Detail == "" {
		return fmt.Sprintf("%s (%s)", ErrBadCredentials, f.Reason)
	}
	return fmt.Sprintf("%s (%s: %s)", ErrBadCredentials, f.Reason, f.Detail)
}

// Is makes errors.Is(f, ErrBadCredentials) true.
func (f *Failure) Is(target error) bool { return target == ErrBadCredentials }

func fail(reason, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Reason returns the reason of a refused credential for the audit log: the Failure's reason,
// "" for nil, "error" for an error that is not a refusal.
func Reason(err error) string {
	var f *Failure
	switch {
	case err == nil:
		return ""
	case errors.As(err, &f):
		return f.Reason
	case errors.Is(err, ErrBadCredentials):
		return ReasonBadPassword
	}
	return "error"
}
