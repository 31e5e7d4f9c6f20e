package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// auditLog returns the entries of every audit-log recording of g, oldest first.
func (g *gateway) auditLog(t testing.TB) []Event {
	t.Helper()
	code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/sessions?type=audit", nil)
	if code != 200 {
		t.Fatalf("list audit logs: %d %s", code, body)
	}
	var ans struct {
		Sessions []Session `json:"sessions"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	var out []Event
	for i := len(ans.Sessions) - 1; i >= 0; i-- {
		s := ans.Sessions[i]
		if s.Type != "audit" {
			continue
		}
		out = append(out, ofType(g.events(t, g.adminToken(t), s.ID), "audit")...)
	}
	return out
}

// findAudit returns the last audit entry with action whose fields match want (actor, outcome,
// subject and detail keys).
func findAudit(entries []Event, action string, want map[string]string) (Event, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.str("action") != action {
			continue
		}
		detail, _ := e.Data["detail"].(map[string]any)
		ok := true
		for k, v := range want {
			got := e.str(k)
			if k != "actor" && k != "outcome" && k != "subject" {
				got, _ = detail[k].(string)
			}
			if got != v {
				ok = false
				break
			}
		}
		if ok {
			return e, true
		}
	}
	return Event{}, false
}

func (g *gateway) requireAudit(t testing.TB, action string, want map[string]string) {
	t.Helper()
	// The audit entry is committed before the answer it is about, so no wait is needed.
	if _, ok := findAudit(g.auditLog(t), action, want); !ok {
		var acts []string
		for _, e := range g.auditLog(t) {
			acts = append(acts, fmt.Sprintf("%s/%s/%s%v", e.str("action"), e.str("actor"), e.str("outcome"), e.Data["detail"]))
		}
		t.Fatalf("no audit entry %s %v among:\n%s", action, want, strings.Join(acts, "\n"))
	}
}

// pgLogin connects through the gateway's postgres listener and runs select 1; it returns the
// SQLSTATE of a refusal ("" when it worked).
func (g *gateway) pgLogin(t testing.TB, user, secret, dbname string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.dsn(user, quoteDSN(secret), dbname, "identity-e2e"))
	if err == nil {
		defer c.Close(ctx)
		var n int
		err = c.QueryRow(ctx, "select 1").Scan(&n)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, err
	}
	return "", err
}

// cli runs the airlock binary with its own HOME (its saved login).
func cli(t testing.TB, home, stdin string, args ...string) cmdResult {
	t.Helper()
	return run(time.Minute, append(cleanEnv(), "HOME="+home), strings.NewReader(stdin), airlockBin, args...)
}

func TestIdentityServiceAccounts(t *testing.T) {
	g := startGateway(t, gwConfig{})
	home := t.TempDir()
	if r := cli(t, home, adminPassword+"\n", "login", "--gateway", g.apiURL(), "--user", "admin"); r.Code != 0 {
		t.Fatalf("admin login: %s", r)
	}
	r := cli(t, home, "", "serviceaccounts", "create", "ci-bot", "--targets", "pg", "--expires", "1h")
	if r.Code != 0 {
		t.Fatalf("create: %s", r)
	}
	key := strings.TrimSpace(r.Stdout)
	if !strings.HasPrefix(key, "alk_") || !strings.Contains(r.Stderr, "shown this once") {
		t.Fatalf("create printed %s", r)
	}
	r = cli(t, home, "", "serviceaccounts", "create", "other-bot", "--targets", "elsewhere")
	if r.Code != 0 {
		t.Fatalf("create other: %s", r)
	}
	otherKey := strings.TrimSpace(r.Stdout)

	// The key is the PostgreSQL password of the account, with psql and with pgx.
	psql := requireTool(t, "psql")
	out := run(time.Minute, g.psqlEnv("ci-bot", key, "pg", "identity-sa"), nil, psql, "-XAtc", "select 40+2")
	if out.Code != 0 || strings.TrimSpace(out.Stdout) != "42" {
		t.Fatalf("psql with the API key: %s", out)
	}
	if code, err := g.pgLogin(t, "ci-bot", key, "pg"); code != "" || err != nil {
		t.Fatalf("pgx with the API key: %s %v", code, err)
	}
	// Its scope: other-bot may reach only "elsewhere".
	if code, err := g.pgLogin(t, "other-bot", otherKey, "pg"); code == "" || code == "28P01" {
		t.Fatalf("out-of-scope target: %q %v, want a refusal after authentication", code, err)
	} else if !strings.Contains(err.Error(), "scope") {
		t.Errorf("out-of-scope refusal does not say why: %v", err)
	}
	// Another account's name with this key: refused.
	if code, _ := g.pgLogin(t, "other-bot", key, "pg"); code != "28P01" {
		t.Errorf("key under another name: %q, want 28P01", code)
	}
	// It is a bearer token for the API too.
	code, body := g.api(t, key, "GET", "/api/v1/whoami", nil)
	if code != 200 || !strings.Contains(string(body), `"service_account":true`) {
		t.Fatalf("whoami with the key: %d %s", code, body)
	}

	r = cli(t, home, "", "serviceaccounts", "list")
	if r.Code != 0 || !strings.Contains(r.Stdout, "ci-bot") || !strings.Contains(r.Stdout, "active") || strings.Contains(r.Stdout, key) {
		t.Fatalf("list: %s", r)
	}
	if r = cli(t, home, "", "serviceaccounts", "revoke", "ci-bot"); r.Code != 0 {
		t.Fatalf("revoke: %s", r)
	}
	if code, _ := g.pgLogin(t, "ci-bot", key, "pg"); code != "28P01" {
		t.Fatalf("revoked key: %q, want 28P01", code)
	}
	if code, _ := g.api(t, key, "GET", "/api/v1/whoami", nil); code != 401 {
		t.Fatalf("revoked key on the API: %d", code)
	}
	r = cli(t, home, "", "serviceaccounts", "list")
	if !strings.Contains(r.Stdout, "revoked by admin") {
		t.Errorf("list after revoke: %s", r)
	}
	g.requireAudit(t, "serviceaccount.create", map[string]string{"actor": "admin", "subject": "ci-bot", "outcome": "ok"})
	g.requireAudit(t, "serviceaccount.revoke", map[string]string{"actor": "admin", "subject": "ci-bot", "outcome": "ok"})
	g.requireAudit(t, "login", map[string]string{"actor": "ci-bot", "outcome": "denied", "protocol": "postgres", "reason": "revoked"})

	// A user may not manage service accounts.
	uhome := t.TempDir()
	if r := cli(t, uhome, alicePassword+"\n", "login", "--gateway", g.apiURL(), "--user", "alice"); r.Code != 0 {
		t.Fatalf("alice login: %s", r)
	}
	if r := cli(t, uhome, "", "serviceaccounts", "create", "sneaky"); r.Code == 0 || !strings.Contains(r.Stderr, "403") {
		t.Errorf("a user created a service account: %s", r)
	}
}

// TestIdentityRevocation: an admin revokes a user's tokens; they stop working at once, over
// PostgreSQL and the API, also after a restart of the gateway (the revocation is in the store);
// a new login works; logout revokes one token.
func TestIdentityRevocation(t *testing.T) {
	g := startGateway(t, gwConfig{})
	home := t.TempDir()
	r := cli(t, home, alicePassword+"\n", "login", "--gateway", g.apiURL(), "--user", "alice", "--print-token")
	if r.Code != 0 {
		t.Fatalf("login: %s", r)
	}
	tok := strings.TrimSpace(r.Stdout)
	if code, err := g.pgLogin(t, "alice", tok, "pg"); code != "" || err != nil {
		t.Fatalf("token as password: %q %v", code, err)
	}
	ahome := t.TempDir()
	if r := cli(t, ahome, adminPassword+"\n", "login", "--gateway", g.apiURL(), "--user", "admin"); r.Code != 0 {
		t.Fatalf("admin login: %s", r)
	}
	if r := cli(t, ahome, "", "tokens", "revoke", "alice"); r.Code != 0 {
		t.Fatalf("tokens revoke: %s", r)
	}
	if code, _ := g.pgLogin(t, "alice", tok, "pg"); code != "28P01" {
		t.Fatalf("revoked token over PostgreSQL: %q, want 28P01", code)
	}
	if code, _ := g.api(t, tok, "GET", "/api/v1/whoami", nil); code != 401 {
		t.Fatalf("revoked token over the API: %d", code)
	}
	g.requireAudit(t, "token.revoke", map[string]string{"actor": "admin", "subject": "alice", "outcome": "ok"})
	g.requireAudit(t, "login", map[string]string{"actor": "alice", "outcome": "denied", "protocol": "postgres", "reason": "revoked"})

	g.stop()
	g.start(t)
	if code, _ := g.pgLogin(t, "alice", tok, "pg"); code != "28P01" {
		t.Fatalf("revoked token after a restart: %q, want 28P01", code)
	}
	// A new login gets a token that works; logout revokes it.
	r = cli(t, home, alicePassword+"\n", "login", "--gateway", g.apiURL(), "--user", "alice", "--print-token")
	tok2 := strings.TrimSpace(r.Stdout)
	if code, err := g.pgLogin(t, "alice", tok2, "pg"); code != "" || err != nil {
		t.Fatalf("new token: %q %v (%s)", code, err, r)
	}
	if r := cli(t, home, "", "logout"); r.Code != 0 {
		t.Fatalf("logout: %s", r)
	}
	if code, _ := g.pgLogin(t, "alice", tok2, "pg"); code != "28P01" {
		t.Fatalf("logged-out token: %q, want 28P01", code)
	}
}
