package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

func newSvc(t *testing.T) (*Service, *time.Time) {
	t.Helper()
	hash, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService([]byte(strings.Repeat("k", 32)), []User{{Name: "alice", PasswordHash: hash, Groups: []string{"dba"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	return s, &now
}

func TestLogin(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	id, err := s.Login(ctx, "alice", "s3cret")
	if err != nil || id.User != "alice" || id.Role != RoleUser || id.Groups[0] != "dba" || id.Method != "password" {
		t.Fatalf("login: %+v, %v", id, err)
	}
	// The cached path must still refuse a wrong password.
	for _, tt := range []struct{ user, pw string }{{"alice", "wrong"}, {"bob", "s3cret"}, {"alice", ""}} {
		if _, err := s.Login(ctx, tt.user, tt.pw); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Login(%q, %q) = %v, want ErrBadCredentials", tt.user, tt.pw, err)
		}
	}
}

func TestTokens(t *testing.T) {
	s, now := newSvc(t)
	id, _ := s.Login(context.Background(), "alice", "s3cret")
	tok, exp, err := s.IssueToken(id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || !exp.Equal(now.Add(12*time.Hour)) {
		t.Fatalf("token %q expires %v", tok, exp)
	}
	got, err := s.Authenticate(context.Background(), "alice", tok)
	if err != nil || got.User != "alice" || got.Method != "token" {
		t.Fatalf("token auth: %+v, %v", got, err)
	}
	if _, err := s.Authenticate(context.Background(), "bob", tok); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token accepted for another user: %v", err)
	}
	tampered := tok[:len(tok)-2] + "xx"
	if _, err := s.VerifyToken(tampered); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("tampered token accepted: %v", err)
	}
	other, _ := NewService([]byte(strings.Repeat("z", 32)), nil)
	if _, err := other.VerifyToken(tok); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token from another key accepted: %v", err)
	}
	*now = now.Add(12 * time.Hour)
	if _, err := s.VerifyToken(tok); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
}

func TestAddUserRejects(t *testing.T) {
	s, _ := newSvc(t)
	for _, u := range []User{{Name: ""}, {Name: "a:b", PasswordHash: "x"}, {Name: "carol", PasswordHash: "plain"}} {
		if err := s.AddUser(u); err == nil {
			t.Errorf("AddUser(%+v) accepted", u)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root) accepted")
	}
}

// TestLoginUnknownUserTiming: refusing an unknown user name costs what refusing a known user's
// wrong password does, whatever the algorithm and cost of the users' hashes. It cost a bcrypt
// check at the default cost whatever they were, so with argon2id hashes (what airlock
// hash-password prints) the time of a refusal told whether the name exists.
func TestLoginUnknownUserTiming(t *testing.T) {
	// An argon2id hash a few times costlier than bcrypt's default cost, as a config may hold.
	const passes, memory = 24, 19 * 1024
	salt := bytes.Repeat([]byte{1}, 16)
	hash := formatArgon2id(passes, memory, 1, salt, argon2.IDKey([]byte("pw"), salt, passes, memory, 1, 32))
	s, err := NewService([]byte(strings.Repeat("k", 32)), []User{{Name: "alice", PasswordHash: hash}, {Name: "bob", PasswordHash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Login(ctx, "nobody", "x") // the dummy hash is made on first use
	fastest := func(user string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			if _, err := s.Login(ctx, user, "wrong"); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("Login(%s, wrong) = %v", user, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known := fastest("alice")
	for _, name := range []string{"carol", "nobody"} {
		if unknown := fastest(name); unknown < known/2 {
			t.Errorf("refusing the unknown user %s took %v, refusing alice's wrong password %v: the names can be told apart", name, unknown, known)
		}
	}
}
