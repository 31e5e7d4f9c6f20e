package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
)

// KV is the part of the store the Service keeps its state in: revocations, service accounts and
// OIDC sessions. Every gateway sharing a store sees the others' revocations at once, since each
// verification reads them (a primary-key lookup).
type KV interface {
	GetKV(ctx context.Context, key string) ([]byte, error) // store.ErrNotFound when absent
	PutKV(ctx context.Context, key string, value []byte) error
}

// Keys in the KV store.
const (
	kvRevokedUser  = "auth/revoked/user/"  // + user: Unix µs; tokens issued at or before it are refused
	kvRevokedToken = "auth/revoked/token/" // + jti: the token's expiry, Unix s
)

// memKV is the KV of a Service without a store (tests, tools): state lives as long as the
// process.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memKV) GetKV(ctx context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (m *memKV) PutKV(ctx context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[key] = append([]byte(nil), value...)
	return nil
}

func (s *Service) kv() KV {
	if s.Store != nil {
		return s.Store
	}
	return &s.mem
}

// RevokeUser refuses, from now on, every gateway token issued to user until now, and every
// refresh of one. Tokens issued later (a new login) are not affected. It returns the time of the
// revocation.
func (s *Service) RevokeUser(ctx context.Context, user string) (time.Time, error) {
	if user == "" {
		return time.Time{}, errors.New("auth: revoke: user name is required")
	}
	now := s.now()
	if err := s.kv().PutKV(ctx, kvRevokedUser+user, []byte(strconv.FormatInt(now.UnixMicro(), 10))); err != nil {
		return time.Time{}, fmt.Errorf("revoke the tokens of %s: %w", user, err)
	}
	return now, nil
}

// RevokeToken refuses one gateway token from now on (logout).
func (s *Service) RevokeToken(ctx context.Context, token string) (*Identity, error) {
	c, err := s.parseToken(token)
	if err != nil {
		return nil, err
	}
	if err := s.kv().PutKV(ctx, kvRevokedToken+c.Nonce, []byte(strconv.FormatInt(c.Expiry, 10))); err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", c.Nonce, err)
	}
	return c.identity(), nil
}

// checkRevoked refuses a token revoked by RevokeUser or RevokeToken. It fails closed: a store
// that cannot answer refuses the token.
func (s *Service) checkRevoked(ctx context.Context, c *tokenClaims) error {
	if _, err := s.kv().GetKV(ctx, kvRevokedToken+c.Nonce); err == nil {
		return fail(ReasonRevoked, "token %s was revoked", c.Nonce)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fail(ReasonStoreError, "read revocations: %v", err)
	}
	b, err := s.kv().GetKV(ctx, kvRevokedUser+c.User)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fail(ReasonStoreError, "read revocations: %v", err)
	}
	at, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fail(ReasonStoreError, "revocation of %s: %q is not a time", c.User, b)
	}
	if c.IssuedUs <= at {
		return fail(ReasonRevoked, "the tokens of %s were revoked at %s", c.User, time.UnixMicro(at).UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckUserRevoked refuses a credential of user issued at or before an admin revoked the user's
// tokens: for IdP tokens presented directly, whose issue time the IdP set.
func (s *Service) CheckUserRevoked(ctx context.Context, user string, issued time.Time) error {
	return s.checkRevoked(ctx, &tokenClaims{User: user, Nonce: "-", IssuedUs: issued.UnixMicro()})
}
