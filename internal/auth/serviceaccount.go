package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
)

// APIKeyPrefix starts every service-account API key: "alk_" + key id + "_" + secret. Secret
// scanners can recognise a leaked one, and the gateway tells it from a password.
const APIKeyPrefix = "alk_"

// Keys in the KV store.
const (
	kvServiceAccounts = "auth/service-accounts" // JSON list of names
	kvServiceAccount  = "auth/service-account/" // + name: the account (JSON)
	kvAPIKey          = "auth/api-key/"         // + key id: the account's name
)

// ServiceAccount is an identity for automation and AI agents, authenticated by an API key.
type ServiceAccount struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Groups    []string  `json:"groups,omitempty"`
	Targets   []string  `json:"targets,omitempty"` // the scope: targets it may reach; empty = every target policy allows
	KeyID     string    `json:"key_id"`            // the public part of the key, shown in lists
	KeyHash   string    `json:"key_hash,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: never
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// Active reports whether the account's key is still accepted at now.
func (a *ServiceAccount) Active(now time.Time) bool {
	return a.RevokedAt.IsZero() && (a.ExpiresAt.IsZero() || now.Before(a.ExpiresAt))
}

// ErrServiceAccountExists is returned when creating an account whose name an active account,
// or a local user, already has.
var ErrServiceAccountExists = errors.New("a service account or user with this name already exists")

// ErrInvalidServiceAccount is returned for a service account that cannot be created as asked.
var ErrInvalidServiceAccount = errors.New("invalid service account")

// ErrNoServiceAccount is returned for an unknown service account.
var ErrNoServiceAccount = errors.New("no such service account")

// CreateServiceAccount creates sa (Name, Role, Groups, Targets, ExpiresAt, CreatedBy are taken
// from it) and returns it with the API key, which is shown this once: only its hash is kept.
// A revoked or expired account's name may be reused; its old key stays refused.
func (s *Service) CreateServiceAccount(ctx context.Context, sa ServiceAccount) (string, ServiceAccount, error) {
	if sa.Name == "" || strings.ContainsAny(sa.Name, ":/ \t") {
		return "", ServiceAccount{}, fmt.Errorf("%w: name %q must be non-empty, without ':', '/' or spaces", ErrInvalidServiceAccount, sa.Name)
	}
	if sa.Role == "" {
		sa.Role = RoleUser
	}
	if _, err := ParseRole(string(sa.Role)); err != nil {
		return "", ServiceAccount{}, fmt.Errorf("%w: %v", ErrInvalidServiceAccount, err)
	}
	if s.HasUser(sa.Name) {
		return "", ServiceAccount{}, fmt.Errorf("%w: %q is a local user", ErrServiceAccountExists, sa.Name)
	}
	now := s.now()
	if !sa.ExpiresAt.IsZero() && !sa.ExpiresAt.After(now) {
		return "", ServiceAccount{}, fmt.Errorf("%w: its expiry must be in the future", ErrInvalidServiceAccount)
	}
	s.saMu.Lock()
	defer s.saMu.Unlock()
	old, err := s.serviceAccount(ctx, sa.Name)
	switch {
	case err == nil && old.Active(now):
		return "", ServiceAccount{}, fmt.Errorf("%w: %q (revoke it first)", ErrServiceAccountExists, sa.Name)
	case err != nil && !errors.Is(err, ErrNoServiceAccount):
		return "", ServiceAccount{}, err
	}
	id := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", ServiceAccount{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", ServiceAccount{}, err
	}
	sa.KeyID = hex.EncodeToString(id)
	sec := base64.RawURLEncoding.EncodeToString(secret)
	sa.KeyHash = hashSecret(sec)
	sa.CreatedAt = now.UTC().Truncate(time.Second)
	sa.ExpiresAt = sa.ExpiresAt.UTC()
	sa.RevokedAt, sa.RevokedBy = time.Time{}, ""
	// The key's index first: a key whose account record is missing is refused anyway.
	if err := s.kv().PutKV(ctx, kvAPIKey+sa.KeyID, []byte(sa.Name)); err != nil {
		return "", ServiceAccount{}, fmt.Errorf("store service account %s: %w", sa.Name, err)
	}
	if err := s.putServiceAccount(ctx, sa); err != nil {
		return "", ServiceAccount{}, err
	}
	if err := store.AddName(ctx, s.kv(), kvServiceAccounts, sa.Name); err != nil {
		return "", ServiceAccount{}, fmt.Errorf("store service account %s: %w", sa.Name, err)
	}
	return APIKeyPrefix + sa.KeyID + "_" + sec, sa, nil
}

// hashSecret is what is stored of an API key's secret. A key carries 256 random bits, so a
// fast hash suffices: there is nothing to guess that a slow one would protect (unlike a
// password).
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// RevokeServiceAccount refuses the account's key from now on. The record is kept, for the list
// and the audit trail.
func (s *Service) RevokeServiceAccount(ctx context.Context, name, by string) (ServiceAccount, error) {
	s.saMu.Lock()
	defer s.saMu.Unlock()
	sa, err := s.serviceAccount(ctx, name)
	if err != nil {
		return ServiceAccount{}, err
	}
	if !sa.RevokedAt.IsZero() {
		return sa, nil
	}
	sa.RevokedAt = s.now().UTC().Truncate(time.Second)
	sa.RevokedBy = by
	if err := s.putServiceAccount(ctx, sa); err != nil {
		return ServiceAccount{}, err
	}
	return sa, nil
}

// ServiceAccounts lists the service accounts, revoked and expired ones included, without their
// key hashes.
func (s *Service) ServiceAccounts(ctx context.Context) ([]ServiceAccount, error) {
	names, err := s.serviceAccountNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ServiceAccount, 0, len(names))
	for _, n := range names {
		sa, err := s.serviceAccount(ctx, n)
		if errors.Is(err, ErrNoServiceAccount) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sa.KeyHash = ""
		out = append(out, sa)
	}
	return out, nil
}

func (s *Service) serviceAccountNames(ctx context.Context) ([]string, error) {
	names, err := store.GetJSON[[]string](ctx, s.kv(), kvServiceAccounts)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read service accounts: %w", err)
	}
	return names, nil
}

func (s *Service) serviceAccount(ctx context.Context, name string) (ServiceAccount, error) {
	sa, err := store.GetJSON[ServiceAccount](ctx, s.kv(), kvServiceAccount+name)
	if errors.Is(err, store.ErrNotFound) {
		return ServiceAccount{}, fmt.Errorf("%w: %q", ErrNoServiceAccount, name)
	}
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("read service account %s: %w", name, err)
	}
	return sa, nil
}

func (s *Service) putServiceAccount(ctx context.Context, sa ServiceAccount) error {
	if err := store.PutJSON(ctx, s.kv(), kvServiceAccount+sa.Name, sa); err != nil {
		return fmt.Errorf("store service account %s: %w", sa.Name, err)
	}
	return nil
}

// verifyAPIKey checks an API key: known id, matching secret, account neither revoked nor
// expired.
func (s *Service) verifyAPIKey(ctx context.Context, key string) (*Identity, error) {
	rest, _ := strings.CutPrefix(key, APIKeyPrefix)
	keyID, secret, ok := strings.Cut(rest, "_")
	if !ok || len(keyID) != 16 || secret == "" {
		return nil, fail(ReasonMalformed, "not an API key")
	}
	name, err := s.kv().GetKV(ctx, kvAPIKey+keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(ReasonUnknownUser, "no API key %s", keyID)
	}
	if err != nil {
		return nil, fail(ReasonStoreError, "read API key %s: %v", keyID, err)
	}
	sa, err := s.serviceAccount(ctx, string(name))
	if errors.Is(err, ErrNoServiceAccount) {
		return nil, fail(ReasonUnknownUser, "API key %s: %v", keyID, err)
	}
	if err != nil {
		return nil, fail(ReasonStoreError, "%v", err)
	}
	// A reused name has a new key; the old key's id no longer matches the record.
	if sa.KeyID != keyID {
		return nil, fail(ReasonRevoked, "API key %s of %s was replaced", keyID, sa.Name)
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(sa.KeyHash)) != 1 {
		return nil, fail(ReasonBadSignature, "API key %s: wrong secret", keyID)
	}
	now := s.now()
	if !sa.RevokedAt.IsZero() {
		return nil, fail(ReasonRevoked, "service account %s was revoked at %s by %s", sa.Name, sa.RevokedAt.Format(time.RFC3339), sa.RevokedBy)
	}
	if !sa.ExpiresAt.IsZero() && !now.Before(sa.ExpiresAt) {
		return nil, fail(ReasonExpired, "the key of service account %s expired at %s", sa.Name, sa.ExpiresAt.Format(time.RFC3339))
	}
	var scope []string
	if len(sa.Targets) > 0 {
		scope = slices.Clone(sa.Targets)
	}
	return &Identity{User: sa.Name, Groups: slices.Clone(sa.Groups), Role: sa.Role, Method: "api_key",
		ExpiresAt: sa.ExpiresAt, Scope: scope, Service: true}, nil
}
