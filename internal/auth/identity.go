package auth

import (
	"context"
	"fmt"
	"slices"
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
	Method    string    `json:"method"` // password | token | api_key
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	// For a gateway token: how its holder logged in (password | oidc), the OIDC provider and
	// session that can refresh it, its id (jti) and when it was issued.
	Via      string    `json:"via,omitempty"`
	Provider string    `json:"provider,omitempty"`
	Session  string    `json:"-"`
	TokenID  string    `json:"-"`
	IssuedAt time.Time `json:"-"`
	// Scope restricts the targets this identity may reach (a service account's scope); nil
	// means every target that policy allows.
	Scope []string `json:"scope,omitempty"`
	// Service is set for a service account (authenticated by an API key).
	Service bool `json:"service,omitempty"`
}

// InScope reports whether the identity's scope allows target.
func (id *Identity) InScope(target string) bool {
	if id.Scope == nil {
		return true
	}
	return slices.Contains(id.Scope, target) || slices.Contains(id.Scope, "*")
}

// Rank orders roles: user < auditor < admin.
func (r Role) Rank() int {
	switch r {
	case RoleUser:
		return 1
	case RoleAuditor:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
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
