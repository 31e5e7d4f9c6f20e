package policy

import (
	"testing"
	"time"

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
			d := New(tt.rules).Decide(tt.id, tt.t)
			if d.Allow != tt.allow || d.Rule != tt.rule || d.Reason == "" {
				t.Fatalf("Decide = %+v, want allow=%v rule=%q", d, tt.allow, tt.rule)
			}
		})
	}
}

func TestSettingsPrecedence(t *testing.T) {
	alice := &auth.Identity{User: "alice", Groups: []string{"dba"}, Role: auth.RoleUser}
	pg := target.Target{Name: "pg", Type: "postgres", Labels: map[string]string{"env": "prod"}}
	rules := []config.Policy{
		{Name: "everyone", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow", Recording: "on", Masking: []string{"email"}, MaxDuration: 8 * time.Hour},
		{Name: "dba-prod", Subjects: []string{"group:dba"}, Targets: []string{"label:env=prod"}, Masking: []string{"credit_card", "email"}, Guardrails: []string{"destructive", "warn:program"}, MaxDuration: time.Hour},
		{Name: "alice-unrecorded", Subjects: []string{"user:alice"}, Targets: []string{"pg"}, Recording: "off"},
		{Name: "group-recorded", Subjects: []string{"group:dba"}, Targets: []string{"pg"}, Recording: "on"},
	}
	d := New(rules).Decide(alice, pg)
	if !d.Allow || d.Rule != "everyone" {
		t.Fatalf("decision %+v", d)
	}
	s := d.Settings
	if s.Record || s.RecordRule != "alice-unrecorded" {
		t.Errorf("recording %v by %q: the user rule is the most specific and says off", s.Record, s.RecordRule)
	}
	if len(s.Masking) != 2 || s.MaxDuration != time.Hour {
		t.Errorf("masking %v, max %v: want the union and the shortest", s.Masking, s.MaxDuration)
	}
	if len(s.Guardrails) != 2 || s.Guardrails[0] != "deny:destructive" || s.Guardrails[1] != "warn:program" {
		t.Errorf("guardrails %v", s.Guardrails)
	}
	if len(d.Rules) != 4 || d.Explain() == "" {
		t.Errorf("rules %v", d.Rules)
	}
}

func TestValidate(t *testing.T) {
	ok := config.Policy{Name: "a", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow"}
	bad := []config.Policy{
		{Name: "", Subjects: []string{"*"}, Targets: []string{"*"}},
		{Name: "b", Subjects: []string{"alice"}, Targets: []string{"*"}},
		{Name: "c", Subjects: []string{"*"}, Targets: []string{"["}},
		{Name: "d", Subjects: []string{"*"}, Targets: []string{"*"}, Guardrails: []string{"explode:destructive"}},
		{Name: "e", Subjects: []string{"*"}, Targets: []string{"*"}, Guardrails: []string{"reads"}},
		{Name: "f", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "deny", Masking: []string{"email"}},
		// ssh: [] reads like "no ssh features", but an empty list is "not set" (shell, exec and
		// sftp): refused rather than taken either way.
		{Name: "g", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow", SSH: []string{}},
	}
	if err := Validate([]config.Policy{ok}); err != nil {
		t.Fatal(err)
	}
	if err := Validate([]config.Policy{ok, ok}); err == nil {
		t.Error("duplicate names accepted")
	}
	for _, r := range bad {
		if err := Validate([]config.Policy{r}); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
}
