package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRevokeUser(t *testing.T) {
	s, now := newSvc(t)
	ctx := context.Background()
	id, _ := s.Login(ctx, "alice", "s3cret")
	tok, _, _ := s.IssueToken(id)
	if _, err := s.Authenticate(ctx, "alice", tok); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(300 * time.Millisecond)
	if _, err := s.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice", tok); Reason(err) != ReasonRevoked || !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("revoked token: %v (reason %q)", err, Reason(err))
	}
	// A login in the same second, after the revocation, gets a token that works.
	*now = now.Add(time.Millisecond)
	tok2, _, _ := s.IssueToken(id)
	if _, err := s.VerifyToken(tok2); err != nil {
		t.Fatalf("token issued after the revocation: %v", err)
	}
}

func TestRevokeToken(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	id, _ := s.Login(ctx, "alice", "s3cret")
	a, _, _ := s.IssueToken(id)
	b, _, _ := s.IssueToken(id)
	if _, err := s.RevokeToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyToken(a); Reason(err) != ReasonRevoked {
		t.Errorf("logged-out token: %v", err)
	}
	if _, err := s.VerifyToken(b); err != nil {
		t.Errorf("the other token was revoked too: %v", err)
	}
}

// TestRevocationShared: two services on one store (two gateways) see each other's revocations.
func TestRevocationShared(t *testing.T) {
	s1, _ := newSvc(t)
	s2, _ := newSvc(t)
	kv := &memKV{}
	s1.Store, s2.Store = kv, kv
	id, _ := s1.Login(context.Background(), "alice", "s3cret")
	tok, _, _ := s1.IssueToken(id)
	s2.Now = func() time.Time { return s1.now().Add(time.Second) }
	if _, err := s2.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.VerifyToken(tok); Reason(err) != ReasonRevoked {
		t.Errorf("revocation on the other gateway not seen: %v", err)
	}
}

type failingKV struct{}

func (failingKV) GetKV(context.Context, string) ([]byte, error) { return nil, errors.New("store down") }
func (failingKV) PutKV(context.Context, string, []byte) error   { return errors.New("store down") }

func TestRevocationFailsClosed(t *testing.T) {
	s, _ := newSvc(t)
	id, _ := s.Login(context.Background(), "alice", "s3cret")
	tok, _, _ := s.IssueToken(id)
	s.Store = failingKV{}
	if _, err := s.VerifyToken(tok); Reason(err) != ReasonStoreError {
		t.Errorf("token accepted without checking revocations: %v", err)
	}
}

func TestServiceAccounts(t *testing.T) {
	s, now := newSvc(t)
	ctx := context.Background()
	key, sa, err := s.CreateServiceAccount(ctx, ServiceAccount{Name: "ci-bot", Targets: []string{"pg"},
		ExpiresAt: now.Add(24 * time.Hour), CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, APIKeyPrefix+sa.KeyID+"_") || sa.Role != RoleUser {
		t.Fatalf("key %q, account %+v", key, sa)
	}
	id, err := s.Authenticate(ctx, "ci-bot", key)
	if err != nil || id.User != "ci-bot" || id.Method != "api_key" || !id.Service || !id.InScope("pg") || id.InScope("other") {
		t.Fatalf("api key: %+v, %v", id, err)
	}
	if _, err := s.Authenticate(ctx, "alice", key); Reason(err) != ReasonWrongUser {
		t.Errorf("key accepted for another user: %v", err)
	}
	for name, bad := range map[string]string{
		"wrong secret": key[:len(key)-3] + "abc",
		"unknown id":   APIKeyPrefix + "0000000000000000_" + strings.SplitN(key, "_", 3)[2],
		"malformed":    APIKeyPrefix + "nope",
	} {
		if _, err := s.VerifySecret(ctx, bad); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: accepted: %v", name, err)
		}
	}
	if _, _, err := s.CreateServiceAccount(ctx, ServiceAccount{Name: "ci-bot"}); !errors.Is(err, ErrServiceAccountExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, _, err := s.CreateServiceAccount(ctx, ServiceAccount{Name: "alice"}); !errors.Is(err, ErrServiceAccountExists) {
		t.Errorf("name of a local user: %v", err)
	}
	list, err := s.ServiceAccounts(ctx)
	if err != nil || len(list) != 1 || list[0].KeyHash != "" || list[0].KeyID != sa.KeyID {
		t.Fatalf("list: %+v, %v", list, err)
	}

	// Expiry.
	saved := *now
	*now = now.Add(24 * time.Hour)
	if _, err := s.VerifySecret(ctx, key); Reason(err) != ReasonExpired {
		t.Errorf("expired key: %v", err)
	}
	*now = saved

	// Revocation; the name can then be reused, and the old key stays refused.
	if _, err := s.RevokeServiceAccount(ctx, "ci-bot", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifySecret(ctx, key); Reason(err) != ReasonRevoked {
		t.Errorf("revoked key: %v", err)
	}
	key2, _, err := s.CreateServiceAccount(ctx, ServiceAccount{Name: "ci-bot"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifySecret(ctx, key); Reason(err) != ReasonRevoked {
		t.Errorf("old key after reuse of the name: %v", err)
	}
	if id, err := s.VerifySecret(ctx, key2); err != nil || id.Scope != nil {
		t.Errorf("new key: %+v, %v", id, err)
	}
	if _, err := s.RevokeServiceAccount(ctx, "nobody", "admin"); !errors.Is(err, ErrNoServiceAccount) {
		t.Errorf("revoke unknown: %v", err)
	}
}

func TestArgon2idPasswords(t *testing.T) {
	s, _ := newSvc(t)
	h, err := HashPasswordArgon2id("n3w-Secret")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	if err := s.AddUser(User{Name: "dave", PasswordHash: h}); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Login(context.Background(), "dave", "n3w-Secret"); err != nil || id.User != "dave" {
		t.Fatalf("argon2id login: %v", err)
	}
	if _, err := s.Login(context.Background(), "dave", "n3w-secret"); Reason(err) != ReasonBadPassword {
		t.Errorf("wrong password: %v", err)
	}
	for _, bad := range []string{"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$", "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43)} {
		if err := s.AddUser(User{Name: "eve", PasswordHash: bad}); err == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
}
