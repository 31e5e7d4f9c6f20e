package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/policy"
)

// withPolicies gives the fixture a config file policy, as the gateway does.
func withPolicies(f *fixture) {
	cfg := []config.Policy{{Name: "admins", Subjects: []string{"role:admin"}, Targets: []string{"*"}, Access: "allow"}}
	f.srv.ConfigPolicies = cfg
	f.srv.Policy = policy.New(cfg)
}

func TestPolicyPut(t *testing.T) {
	f := newFixture(t)
	withPolicies(f)
	l := withAudit(t, f)
	body := `{"policies":[{"name":"dba","subjects":["group:dba"],"targets":["pg"],"access":"allow","recording":"off","masking":["email"],"guardrails":["destructive"]}]}`

	if res, b := f.do(t, "PUT", "/api/v1/policies", "alice", body); res.StatusCode != 403 {
		t.Fatalf("user PUT: %d %s", res.StatusCode, b)
	}
	if res, b := f.do(t, "PUT", "/api/v1/policies", "carol", body); res.StatusCode != 403 {
		t.Fatalf("auditor PUT: %d %s", res.StatusCode, b)
	}
	res, b := f.do(t, "PUT", "/api/v1/policies", "root", body)
	if res.StatusCode != 200 {
		t.Fatalf("admin PUT: %d %s", res.StatusCode, b)
	}
	if n := len(f.srv.Policy.Rules()); n != 2 {
		t.Fatalf("engine has %d rules, want config + api", n)
	}
	raw, err := f.st.GetKV(context.Background(), PolicyKey)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := StoredPolicies(context.Background(), f.st)
	if len(stored) != 1 || stored[0].Name != "dba" {
		t.Fatalf("stored %s", raw)
	}

	// Listing: the config's first, each with its source; users may not read.
	if res, _ := f.do(t, "GET", "/api/v1/policies", "alice", ""); res.StatusCode != 403 {
		t.Fatalf("user GET: %d", res.StatusCode)
	}
	res, b = f.do(t, "GET", "/api/v1/policies", "carol", "")
	var list struct {
		Policies []struct {
			Name, Source string
			Masking      []string
		}
	}
	if err := json.Unmarshal(b, &list); err != nil || res.StatusCode != 200 || len(list.Policies) != 2 ||
		list.Policies[0].Source != "config" || list.Policies[1].Source != "api" || list.Policies[1].Masking[0] != "email" {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}

	// Invalid rules are refused with policy.Validate's message, and change nothing.
	for _, tt := range []struct{ body, want string }{
		{`{"policies":[{"name":"x","subjects":["alice"],"targets":["pg"],"access":"allow"}]}`, `subject "alice"`},
		{`{"policies":[{"name":"x","subjects":["*"],"targets":["pg"],"guardrails":["reads"]}]}`, `unknown class`},
		{`{"policies":[{"name":"admins","subjects":["*"],"targets":["pg"],"access":"allow"}]}`, `config file`},
		{`{"policies":[{"name":"x","subjects":["*"],"targets":["pg"],"access":"maybe"}]}`, `access must be`},
	} {
		res, b := f.do(t, "PUT", "/api/v1/policies", "root", tt.body)
		if res.StatusCode != 400 || !strings.Contains(decode(t, b)["error"].(string), tt.want) {
			t.Errorf("PUT %s: %d %s, want 400 naming %q", tt.body, res.StatusCode, b, tt.want)
		}
	}
	if n := len(f.srv.Policy.Rules()); n != 2 {
		t.Fatalf("a refused PUT changed the engine: %d rules", n)
	}

	// Replace: dba changed, ops added; then remove everything.
	body2 := `{"policies":[{"name":"dba","subjects":["group:dba"],"targets":["pg"],"access":"allow"},{"name":"ops","subjects":["group:ops"],"targets":["*"],"access":"allow"}]}`
	if res, b := f.do(t, "PUT", "/api/v1/policies", "root", body2); res.StatusCode != 200 {
		t.Fatalf("second PUT: %d %s", res.StatusCode, b)
	}
	if res, b := f.do(t, "PUT", "/api/v1/policies", "root", `{"policies":[]}`); res.StatusCode != 200 {
		t.Fatalf("empty PUT: %d %s", res.StatusCode, b)
	}
	if n := len(f.srv.Policy.Rules()); n != 1 {
		t.Fatalf("after removing every API policy the engine has %d rules", n)
	}

	entries, _ := auditEntries(t, f, l)
	var got []string
	for _, e := range entries {
		if e.Action != "policy.put" {
			continue
		}
		got = append(got, e.Actor+" "+e.Outcome+" added="+e.Detail["added"]+" removed="+e.Detail["removed"]+" changed="+e.Detail["changed"])
	}
	want := []string{
		"alice denied added= removed= changed=",
		"carol denied added= removed= changed=",
		"root ok added=dba removed= changed=",
		"root ok added=ops removed= changed=dba",
		"root ok added= removed=dba,ops changed=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPolicyPutAuditFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.srv.Audit = failingAuditor{}
	res, b := f.do(t, "PUT", "/api/v1/policies", "root", `{"policies":[{"name":"p","subjects":["*"],"targets":["*"],"access":"deny"}]}`)
	if res.StatusCode != 503 || len(f.srv.Policy.Rules()) != 0 {
		t.Fatalf("unaudited PUT: %d %s, %d rules", res.StatusCode, b, len(f.srv.Policy.Rules()))
	}
}

func TestPolicyExplain(t *testing.T) {
	f := newFixture(t)
	withPolicies(f)
	rules := append(f.srv.ConfigPolicies, config.Policy{Name: "dba", Subjects: []string{"group:dba"}, Targets: []string{"pg"},
		Access: "allow", Recording: "off", Masking: []string{"email"}})
	if err := f.srv.Policy.SetRules(rules); err != nil {
		t.Fatal(err)
	}

	// alice is local, in group dba: the gateway knows her groups.
	res, b := f.do(t, "GET", "/api/v1/policies/explain?user=alice&target=pg", "carol", "")
	var d struct {
		policy.Decision
		Text string
	}
	if err := json.Unmarshal(b, &d); err != nil || res.StatusCode != 200 {
		t.Fatalf("explain: %d %s", res.StatusCode, b)
	}
	if !d.Allow || d.Rule != "dba" || d.Settings.Record || d.Text != d.Explain() || !strings.Contains(d.Text, "ALLOW (rule dba)") {
		t.Fatalf("explain alice: %s", b)
	}
	// bob is local and in no group.
	_, b = f.do(t, "GET", "/api/v1/policies/explain?user=bob&target=pg", "root", "")
	if m := decode(t, b); m["allow"] != false || !strings.Contains(m["text"].(string), "DENY") {
		t.Fatalf("explain bob: %s", b)
	}
	// Someone the gateway does not know: groups and role from the query.
	_, b = f.do(t, "GET", "/api/v1/policies/explain?user=sso-dave&target=pg&groups=x,dba", "root", "")
	if m := decode(t, b); m["allow"] != true || m["rule"] != "dba" {
		t.Fatalf("explain sso-dave: %s", b)
	}
	for _, tt := range []struct {
		path, user string
		status     int
	}{
		{"/api/v1/policies/explain?user=alice&target=pg", "alice", 403},
		{"/api/v1/policies/explain?user=alice&target=nope", "root", 404},
		{"/api/v1/policies/explain?user=alice", "root", 400},
		{"/api/v1/policies/explain?user=alice&target=pg&groups=admins", "root", 400},
		{"/api/v1/policies/explain?user=dave&target=pg&role=root", "root", 400},
	} {
		if res, b := f.do(t, "GET", tt.path, tt.user, ""); res.StatusCode != tt.status {
			t.Errorf("%s as %s: %d %s, want %d", tt.path, tt.user, res.StatusCode, b, tt.status)
		}
	}
}
