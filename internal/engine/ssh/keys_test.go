package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/auth"
)

type revokedBefore time.Time

func (r revokedBefore) CheckUserRevoked(_ context.Context, _ string, issued time.Time) error {
	if !issued.After(time.Time(r)) {
		return errors.New("revoked")
	}
	return nil
}

type subjects struct{ gone string }

func (s subjects) CheckCertSubject(_ context.Context, id *auth.Identity, via string) error {
	if id.User == s.gone || via != "password" {
		return errors.New("gone")
	}
	return nil
}

// TestCertIdentity: certificates of the gateway's CA log in their principal while valid and not
// revoked; anything else is refused.
func TestCertIdentity(t *testing.T) {
	ca, err := OpenUserCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenUserCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	alice := &auth.Identity{User: "alice", Role: auth.RoleUser, Groups: []string{"dba", "ops"}, Method: "token", Via: "password"}
	sign := func(ca *UserCA, id *auth.Identity, now time.Time) *ssh.Certificate {
		ca.Now = func() time.Time { return now }
		c, err := ca.Sign(id, key, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e := &Engine{ca: ca}
	good := sign(ca, alice, time.Now())
	id, err := e.certIdentity(context.Background(), "alice", good)
	if err != nil || id.User != "alice" || id.Method != "certificate" || len(id.Groups) != 2 || id.Role != auth.RoleUser {
		t.Fatalf("good certificate: %+v, %v", id, err)
	}
	sa := sign(ca, &auth.Identity{User: "ci", Role: auth.RoleUser, Service: true, Scope: []string{"web-1"}}, time.Now())
	if id, err := e.certIdentity(context.Background(), "ci", sa); err != nil || !id.Service || len(id.Scope) != 1 || id.Scope[0] != "web-1" {
		t.Errorf("service account's certificate: %+v, %v", id, err)
	}

	host := *good
	host.CertType = ssh.HostCert
	host.SignCert(rand.Reader, ca.signer)
	noIssue := *good
	noIssue.Permissions.Extensions = map[string]string{extRole: "user"}
	noIssue.SignCert(rand.Reader, ca.signer)
	for _, tc := range []struct {
		name string
		e    *Engine
		user string
		cert *ssh.Certificate
	}{
		{"expired", e, "alice", sign(ca, alice, time.Now().Add(-2*time.Hour))},
		{"not yet valid", e, "alice", sign(ca, alice, time.Now().Add(2*time.Hour))},
		{"another CA", e, "alice", sign(other, alice, time.Now())},
		{"another user", e, "bob", good},
		{"host certificate", e, "alice", &host},
		{"no issue time", e, "alice", &noIssue},
		{"revoked", &Engine{ca: ca, revoked: revokedBefore(time.Now().Add(time.Minute))}, "alice", good},
		{"no CA", &Engine{}, "alice", good},
		{"user gone", &Engine{ca: ca, subjects: subjects{gone: "alice"}}, "alice", good},
	} {
		if id, err := tc.e.certIdentity(context.Background(), tc.user, tc.cert); err == nil {
			t.Errorf("%s: accepted as %+v", tc.name, id)
		}
	}
	if _, err := (&Engine{ca: ca, subjects: subjects{gone: "bob"}}).certIdentity(context.Background(), "alice", good); err != nil {
		t.Errorf("a user still there, who logged in by password: %v", err)
	}
	if _, err := (&Engine{ca: ca, revoked: revokedBefore(time.Now().Add(-time.Hour))}).certIdentity(context.Background(), "alice", good); err != nil {
		t.Errorf("issued after the revocation: %v", err)
	}
}
