package auth

import (
	"context"
	"fmt"
	"time"
)

// Role is what an identity may do in the gateway itself.
type Role string

const (
	RoleUser    Role = "user"    // connect to targets; see own sessions
	RoleAuditor Role = "auditor" // read every recording
	RoleAdmin   Role = "admin"   // configure the gateway; read every recording
)

// ParseRole accepts the three role names; empty means user.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case "", RoleUser:
		return RoleUser, nil
	case RoleAuditor, RoleAdmin:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q (want user, auditor or admin)", s)
}

// CanReadAll reports whether the role may read every session's recording.
func (r Role) CanReadAll() bool { return r == RoleAuditor || r == RoleAdmin }

// Identity is an authenticated subject.
type Identity struct {
	User      string    `json:"user"`
	Groups    []string  `json:"groups,omitempty"`
	Role      Role      `json:"role"`
	Method    string    `json:"method"` // password | token
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

type ctxKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity carried by ctx, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}
