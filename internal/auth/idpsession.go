package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
)

// kvIdPSession + session id holds an IdPSession.
const kvIdPSession = "auth/idp-session/"

// RefreshWindow is how long after its expiry a gateway token may still be refreshed (the IdP
// decides whether its session still lives; this bounds what a stolen expired token is worth).
const RefreshWindow = 30 * 24 * time.Hour

// IdPSession is what the gateway keeps of an OIDC login so that the gateway tokens it issued can
// be refreshed: the provider's refresh token. It lives in the store next to the gateway's own
// token key, which is as sensitive.
type IdPSession struct {
	Provider     string    `json:"provider"`
	User         string    `json:"user"`
	RefreshToken string    `json:"refresh_token"`
	CreatedAt    time.Time `json:"created_at"`
	RefreshedAt  time.Time `json:"refreshed_at,omitzero"`
	// EndedAt is when a logout ended the session (EndIdPSession): its refresh token is gone,
	// and no token of the login can be refreshed any more.
	EndedAt time.Time `json:"ended_at,omitzero"`
}

// NewSessionID returns a random id for an IdP session.
func NewSessionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// PutIdPSession stores (or replaces) an IdP session.
func (s *Service) PutIdPSession(ctx context.Context, id string, sess IdPSession) error {
	if err := store.PutJSON(ctx, s.kv(), kvIdPSession+id, sess); err != nil {
		return fmt.Errorf("store IdP session: %w", err)
	}
	return nil
}

// GetIdPSession returns an IdP session; a missing one is a Failure (not refreshable).
func (s *Service) GetIdPSession(ctx context.Context, id string) (IdPSession, error) {
	sess, err := store.GetJSON[IdPSession](ctx, s.kv(), kvIdPSession+id)
	if errors.Is(err, store.ErrNotFound) {
		return IdPSession{}, fail(ReasonNotRefreshable, "no IdP session %s", id)
	}
	if err != nil {
		return IdPSession{}, fmt.Errorf("read IdP session: %w", err)
	}
	if !sess.EndedAt.IsZero() {
		return IdPSession{}, fail(ReasonRevoked, "the IdP session %s was ended by a logout at %s", id, sess.EndedAt.Format(time.RFC3339))
	}
	return sess, nil
}

// EndIdPSession ends an IdP session at a logout: the refresh token is forgotten, so that no
// gateway token of that login (the one logged out, or one issued before a refresh) can be
// refreshed any more. An unknown or already ended session is no error.
func (s *Service) EndIdPSession(ctx context.Context, id string) error {
	sess, err := s.GetIdPSession(ctx, id)
	var f *Failure
	if errors.As(err, &f) {
		return nil
	}
	if err != nil {
		return err
	}
	sess.RefreshToken, sess.EndedAt = "", s.now().UTC()
	return s.PutIdPSession(ctx, id, sess)
}

// VerifyForRefresh checks a gateway token presented for refresh: signature and revocation as
// always, but it may have expired up to RefreshWindow ago, and it must come from an OIDC login.
func (s *Service) VerifyForRefresh(ctx context.Context, token string) (*Identity, error) {
	c, err := s.parseToken(token)
	if err != nil {
		return nil, err
	}
	if exp := time.Unix(c.Expiry, 0); s.now().After(exp.Add(RefreshWindow)) {
		return nil, fail(ReasonExpired, "token expired at %s, too long ago to be refreshed", exp.UTC().Format(time.RFC3339))
	}
	if err := s.checkRevoked(ctx, c); err != nil {
		return nil, err
	}
	if c.Session == "" {
		return nil, fail(ReasonNotRefreshable, "a %s token has no IdP session to renew it: log in again", c.Via)
	}
	return c.identity(), nil
}

// TokenSubject returns the user a gateway token was issued to when its signature is ours
// (whatever its expiry or revocation), else "": to name the actor of a refused refresh.
func (s *Service) TokenSubject(token string) string {
	c, err := s.parseToken(token)
	if err != nil {
		return ""
	}
	return c.User
}
