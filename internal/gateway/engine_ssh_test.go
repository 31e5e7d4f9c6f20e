package gateway

import (
	"bytes"
	"context"
	"testing"

	"github.com/airlock-gw/airlock/internal/auth"
)

// TestCheckCertSubject: a certificate's user must still be able to log in.
func TestCheckCertSubject(t *testing.T) {
	ctx := context.Background()
	hash, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{{Name: "alice", PasswordHash: hash, Role: auth.RoleUser}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateServiceAccount(ctx, auth.ServiceAccount{Name: "ci", Role: auth.RoleUser}); err != nil {
		t.Fatal(err)
	}
	a := authenticator{svc: svc}
	for _, tc := range []struct {
		name string
		id   auth.Identity
		via  string
		ok   bool
	}{
		{"local user", auth.Identity{User: "alice"}, "password", true},
		{"local user gone", auth.Identity{User: "carol"}, "password", false},
		{"OIDC user (not local)", auth.Identity{User: "dave"}, "oidc", true},
		{"service account", auth.Identity{User: "ci", Service: true}, "api_key", true},
		{"no such service account", auth.Identity{User: "cd", Service: true}, "api_key", false},
	} {
		if err := a.CheckCertSubject(ctx, &tc.id, tc.via); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := svc.RevokeServiceAccount(ctx, "ci", "root"); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckCertSubject(ctx, &auth.Identity{User: "ci", Service: true}, "api_key"); err == nil {
		t.Error("a revoked service account's certificate is accepted")
	}
}
