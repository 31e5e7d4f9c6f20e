package cli

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/target"
)

// policyHarness is newHarness's test gateway with a config file policy.
func policyHarness(t *testing.T) *harness {
	h := newHarness(t)
	cfg := []config.Policy{{Name: "admins", Subjects: []string{"role:admin"}, Targets: []string{"*"}, Access: "allow"}}
	srv := &api.Server{Store: h.st, Auth: h.auth, Policy: policy.New(cfg), ConfigPolicies: cfg,
		Targets: &target.Catalog{Static: map[string]target.Target{"pg": {Name: "pg", Type: "postgres", Address: "127.0.0.1:5432", Source: "config"}}, Store: h.st}}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

func TestPolicySetListExplain(t *testing.T) {
	h := policyHarness(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rules, []byte(`- name: dba-prod
  subjects: [group:dba, user:alice]
  targets: [pg, "prod-*"]
  access: allow
  recording: off
  masking: [credit_card, email]
  guardrails: [destructive]
  max_duration: 2h
`), 0o600)

	if code, _, stderr := h.as(t, "alice").run(t, runPolicy, "set", "-f", rules); code != exitFailure || !strings.Contains(stderr, "403") {
		t.Fatalf("set as a user: %d %q", code, stderr)
	}
	code, stdout, stderr := h.as(t, "root").run(t, runPolicy, "set", "-f", rules)
	if code != exitOK || !strings.Contains(stdout, "Set 1") {
		t.Fatalf("set: %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = h.run(t, runPolicy, "list")
	if code != exitOK || !strings.Contains(stdout, "admins") || !strings.Contains(stdout, "dba-prod") || !strings.Contains(stdout, "2h0m0s") {
		t.Fatalf("list: %d %q %q", code, stdout, stderr)
	}

	code, stdout, stderr = h.run(t, runPolicy, "explain", "--user", "alice", "--target", "pg")
	want := "ALLOW (rule dba-prod): policy \"dba-prod\" allows alice access to pg\n" +
		"matching rules: dba-prod\n" +
		"recording: off (rule dba-prod)\n" +
		"masking: credit_card, email\n" +
		"guardrails: deny:destructive\n" +
		"max session duration: 2h0m0s\n"
	if code != exitOK || stdout != want {
		t.Fatalf("explain: %d\n%s\nwant:\n%s\nstderr %q", code, stdout, want, stderr)
	}
	code, stdout, _ = h.run(t, runPolicy, "explain", "--user", "nobody", "--target", "pg", "--groups", "ops", "--json")
	if code != exitOK || !strings.Contains(stdout, `"allow": false`) || !strings.Contains(stdout, `"text": "DENY`) {
		t.Fatalf("explain --json: %d %s", code, stdout)
	}
	if code, _, stderr := h.run(t, runPolicy, "explain", "--user", "alice", "--target", "nope"); code != exitFailure || !strings.Contains(stderr, "404") {
		t.Fatalf("explain unknown target: %d %q", code, stderr)
	}
	if code, _, _ := h.run(t, runPolicy, "explain", "--user", "alice"); code != exitUsage {
		t.Fatalf("explain without --target: %d", code)
	}

	// A bad rule comes back with the gateway's reason.
	os.WriteFile(rules, []byte("- {name: x, subjects: [alice], targets: [pg], access: allow}\n"), 0o600)
	if code, _, stderr := h.run(t, runPolicy, "set", "-f", rules); code != exitFailure || !strings.Contains(stderr, `subject "alice"`) {
		t.Fatalf("set invalid: %d %q", code, stderr)
	}
	os.WriteFile(rules, []byte("- {name: x, subjects: ['*'], targets: [pg], mask: [email]}\n"), 0o600)
	if code, _, stderr := h.run(t, runPolicy, "set", "-f", rules); code != exitFailure || !strings.Contains(stderr, "mask") {
		t.Fatalf("set unknown key: %d %q", code, stderr)
	}
}
