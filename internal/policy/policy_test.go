package policy

import (
	"testing"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/target"
)

func TestDecide(t *testing.T) {
	alice := &auth.Identity{User: "alice", Groups: []string{"dba"}, Role: auth.RoleUser}
	bob := &auth.Identity{User: "bob", Role: auth.RoleAuditor}
	pg := target.Target{Name: "pg", Type: "postgres"}
	prod := target.Target{Name: "prod-db", Type: "postgres"}
	rules := []config.Policy{
		{Name: "dba-all", Subjects: []string{"group:dba"}, Targets: []string{"*"}, Access: "allow"},
		{Name: "no-prod-for-alice", Subjects: []string{"user:alice"}, Targets: []string{"prod-*"}, Access: "deny"},
		{Name: "auditors-pg", Subjects: []string{"role:auditor"}, Targets: []string{"type:postgres"}, Access: "allow"},
	}
	tests := []struct {
		name  string
		rules []config.Policy
		id    *auth.Identity
		t     target.Target
		allow bool
		rule  string
	}{
		{"no policies allow all", nil, alice, prod, true, "default"},
		{"group allow", rules, alice, pg, true, "dba-all"},
		{"deny wins over allow", rules, alice, prod, false, "no-prod-for-alice"},
		{"role and type", rules, bob, prod, true, "auditors-pg"},
		{"nothing matches", rules[:2], bob, pg, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := (&Engine{Rules: tt.rules}).Decide(tt.id, tt.t)
			if d.Allow != tt.allow || d.Rule != tt.rule || d.Reason == "" {
				t.Fatalf("Decide = %+v, want allow=%v rule=%q", d, tt.allow, tt.rule)
			}
		})
	}
}
