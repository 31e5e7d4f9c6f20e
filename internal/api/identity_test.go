package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
)

func (f *fixture) bearer(t *testing.T, method, path, cred, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	return rw.Code, decode(t, rw.Body.Bytes())
}

func lastAudit(t *testing.T, got []event.AuditData, action string) event.AuditData {
	t.Helper()
	for i := len(got) - 1; i >= 0; i-- {
		if got[i].Action == action {
			return got[i]
		}
	}
	t.Fatalf("no %s entry in %+v", action, got)
	return event.AuditData{}
}

func TestServiceAccountAPI(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	root := f.tokens["root"]
	code, m := f.bearer(t, "POST", "/api/v1/service-accounts", root, `{"name":"ci","targets":["pg"],"expires_in":"1h"}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, m)
	}
	key, _ := m["api_key"].(string)
	if !strings.HasPrefix(key, "alk_") {
		t.Fatalf("api key %q", key)
	}
	sa := m["service_account"].(map[string]any)
	if sa["key_hash"] != nil || sa["active"] != true || sa["created_by"] != "root" {
		t.Errorf("created account %v", sa)
	}
	got, raw := auditEntries(t, f, l)
	e := lastAudit(t, got, "serviceaccount.create")
	if e.Actor != "root" || e.Subject != "ci" || e.Outcome != "ok" || e.Detail["key_id"] != sa["key_id"] {
		t.Errorf("audit %+v", e)
	}
	if strings.Contains(string(raw), key) || strings.Contains(string(raw), strings.SplitN(key, "_", 3)[2]) {
		t.Error("the audit log holds the API key")
	}
	if code, m := f.bearer(t, "POST", "/api/v1/service-accounts", root, `{"name":"ci"}`); code != 409 {
		t.Errorf("duplicate: %d %v", code, m)
	}
	if code, m := f.bearer(t, "POST", "/api/v1/service-accounts", root, `{"name":"x","expires_in":"soon"}`); code != 400 {
		t.Errorf("bad expiry: %d %v", code, m)
	}

	// The key is a bearer credential for the API, as the account with role user.
	code, m = f.bearer(t, "GET", "/api/v1/whoami", key, "")
	if code != 200 || m["user"] != "ci" || m["method"] != "api_key" || m["service_account"] != true || m["role"] != "user" {
		t.Fatalf("whoami with the key: %d %v", code, m)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/service-accounts", key, ""); code != 403 {
		t.Errorf("the account lists accounts: %d", code)
	}
	code, m = f.bearer(t, "GET", "/api/v1/service-accounts", root, "")
	list := m["service_accounts"].([]any)
	if code != 200 || len(list) != 1 || strings.Contains(mustString(m), key) {
		t.Fatalf("list: %d %v", code, m)
	}

	if code, m := f.bearer(t, "POST", "/api/v1/service-accounts/ci/revoke", root, ""); code != 200 {
		t.Fatalf("revoke: %d %v", code, m)
	}
	if code, m := f.bearer(t, "GET", "/api/v1/whoami", key, ""); code != 401 {
		t.Fatalf("revoked key: %d %v", code, m)
	}
	got, _ = auditEntries(t, f, l)
	if e := lastAudit(t, got, "serviceaccount.revoke"); e.Actor != "root" || e.Subject != "ci" {
		t.Errorf("revoke audit %+v", e)
	}
	if e := lastAudit(t, got, "login"); e.Outcome != "denied" || e.Detail["reason"] != "revoked" || e.Detail["method"] != "api_key" {
		t.Errorf("refused key audit %+v", e)
	}
}

func mustString(v any) string { return string(mustJSON(v)) }

func TestRevokeAndLogout(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	alice := f.tokens["alice"]
	if code, _ := f.bearer(t, "GET", "/api/v1/whoami", alice, ""); code != 200 {
		t.Fatal("alice's token does not work to begin with")
	}
	if code, m := f.bearer(t, "POST", "/api/v1/auth/revoke", f.tokens["carol"], `{"user":"alice"}`); code != 403 {
		t.Fatalf("an auditor revoked: %d %v", code, m)
	}
	if code, m := f.bearer(t, "POST", "/api/v1/auth/revoke", f.tokens["root"], `{"user":"alice"}`); code != 200 {
		t.Fatalf("revoke: %d %v", code, m)
	}
	code, m := f.bearer(t, "GET", "/api/v1/whoami", alice, "")
	if code != 401 || !strings.Contains(m["error"].(string), "revoked") {
		t.Fatalf("revoked token: %d %v", code, m)
	}
	got, _ := auditEntries(t, f, l)
	if e := lastAudit(t, got, "token.revoke"); e.Actor != "root" || e.Subject != "alice" || e.Outcome != "ok" {
		t.Errorf("revoke audit %+v", e)
	}
	if e := lastAudit(t, got, "login"); e.Outcome != "denied" || e.Detail["reason"] != "revoked" {
		t.Errorf("refused token audit %+v", e)
	}
	// A new login works.
	code, m = f.bearer(t, "POST", "/api/v1/auth/login", "", `{"username":"alice","password":"pw"}`)
	if code != 200 {
		t.Fatalf("login after revocation: %d %v", code, m)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/whoami", m["token"].(string), ""); code != 200 {
		t.Fatalf("new token after revocation: %d", code)
	}

	// Logout revokes only the token it is called with.
	bob1, bob2 := f.tokens["bob"], f.fresh("bob", "user")(t)
	if code, m := f.bearer(t, "POST", "/api/v1/auth/logout", bob1, ""); code != 200 {
		t.Fatalf("logout: %d %v", code, m)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/whoami", bob1, ""); code != 401 {
		t.Errorf("logged-out token: %d", code)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/whoami", bob2, ""); code != 200 {
		t.Errorf("bob's other token: %d", code)
	}
	// Refresh of a password login's token: refused, it has no IdP session.
	if code, m := f.bearer(t, "POST", "/api/v1/auth/refresh", "", `{"token":"`+bob2+`"}`); code != 401 || !strings.Contains(m["error"].(string), "cannot be refreshed") {
		t.Errorf("refresh of a password token: %d %v", code, m)
	}
}

// TestScopedTargets: a service account with a scope lists only its targets.
func TestScopedTargets(t *testing.T) {
	f := newFixture(t)
	key, _, err := f.srv.Auth.CreateServiceAccount(context.Background(), auth.ServiceAccount{Name: "narrow", Targets: []string{"elsewhere"}})
	if err != nil {
		t.Fatal(err)
	}
	code, m := f.bearer(t, "GET", "/api/v1/targets", key, "")
	if code != 200 || len(m["targets"].([]any)) != 0 {
		t.Errorf("scoped account lists %d %v", code, m)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/targets/pg", key, ""); code != 404 {
		t.Errorf("scoped account reads an out-of-scope target: %d", code)
	}
	if code, m := f.bearer(t, "GET", "/api/v1/targets", f.tokens["alice"], ""); code != 200 || len(m["targets"].([]any)) != 1 {
		t.Errorf("alice lists %d %v", code, m)
	}
}

func TestListUsers(t *testing.T) {
	f := newFixture(t)
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
	hash, _ := auth.HashPassword("pw")
	if err := f.srv.Auth.AddUser(auth.User{Name: "dave", PasswordHash: hash, Role: auth.RoleUser, SSHKeys: []string{key}}); err != nil {
		t.Fatal(err)
	}
	code, m := f.bearer(t, "GET", "/api/v1/users", f.tokens["root"], "")
	if code != 200 {
		t.Fatalf("list: %d %v", code, m)
	}
	raw := fmt.Sprint(m)
	if strings.Contains(raw, "$2a$") || strings.Contains(raw, "AAAAC3Nza") {
		t.Fatalf("the list shows a password hash or a whole key: %s", raw)
	}
	users := m["users"].([]any)
	var names []string
	for _, u := range users {
		names = append(names, u.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "alice,bob,carol,dave,root" {
		t.Fatalf("users %v", names)
	}
	alice, dave := users[0].(map[string]any), users[3].(map[string]any)
	if alice["role"] != "user" || fmt.Sprint(alice["groups"]) != "[dba]" {
		t.Errorf("alice %v", alice)
	}
	if fmt.Sprint(dave["ssh_keys"]) != "[SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU]" {
		t.Errorf("dave %v", dave)
	}
	if code, _ := f.bearer(t, "GET", "/api/v1/users", f.tokens["carol"], ""); code != 403 {
		t.Errorf("auditor lists users: %d, want 403", code)
	}
}

// TestLogoutByCookie: POST /api/v1/auth/logout signed in by the web UI's cookie revokes the
// cookie's token (it answered 500 after auditing a revocation it never made: it revoked the
// absent bearer token).
func TestLogoutByCookie(t *testing.T) {
	f := newFixture(t)
	aud := f.recordAudit()
	c, csrf := webLogin(t, f, "alice")
	if rw := cookieReq(f, "POST", "/api/v1/auth/logout", "", c, csrf); rw.Code != http.StatusOK {
		t.Fatalf("logout by cookie: %d %s", rw.Code, rw.Body)
	}
	if rw := cookieReq(f, "GET", "/api/v1/whoami", "", c, ""); rw.Code != http.StatusUnauthorized {
		t.Fatalf("whoami with the logged-out cookie: %d %s, want 401", rw.Code, rw.Body)
	}
	var revokes int
	for _, e := range aud.entries() {
		if e.Action == audit.ActionTokenRevoke && e.Actor == "alice" && e.Outcome == audit.OK && e.Detail["token_id"] != "" {
			revokes++
		}
	}
	if revokes != 1 {
		t.Fatalf("%d token.revoke entries for alice's logout, want 1: %+v", revokes, aud.entries())
	}
}

// TestLogoutEndsRefresh: logging out a token of an OIDC login ends the login's IdP session, so
// that a token of the same login issued before a refresh (still in a shell history, a CI log)
// cannot be refreshed into new tokens after the logout. It could, for 30 days while the IdP
// session lived: a logout revoked only the one token.
func TestLogoutEndsRefresh(t *testing.T) {
	for _, via := range []string{"api", "web"} {
		t.Run(via, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			sid := auth.NewSessionID()
			if err := f.srv.Auth.PutIdPSession(ctx, sid, auth.IdPSession{Provider: "corp", User: "dora", RefreshToken: "rt-dora", CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			id := &auth.Identity{User: "dora", Role: auth.RoleUser, Method: "oidc", Via: "oidc", Provider: "corp", Session: sid}
			older, _, _ := f.srv.Auth.IssueToken(id) // before a refresh
			newer, _, _ := f.srv.Auth.IssueToken(id) // the refresh's
			switch via {
			case "api":
				if code, m := f.bearer(t, "POST", "/api/v1/auth/logout", newer, ""); code != 200 {
					t.Fatalf("logout: %d %v", code, m)
				}
			case "web":
				if rw := cookieReq(f, "DELETE", "/api/v1/auth/session", "", &http.Cookie{Name: SessionCookie, Value: newer}, csrfToken(newer)); rw.Code != http.StatusNoContent {
					t.Fatalf("sign out: %d %s", rw.Code, rw.Body)
				}
			}
			code, m := f.bearer(t, "POST", "/api/v1/auth/refresh", "", `{"token":"`+older+`"}`)
			if code != 401 || !strings.Contains(fmt.Sprint(m["error"]), "revoked") {
				t.Fatalf("refresh of the login's older token after the logout: %d %v, want 401 revoked", code, m)
			}
			if _, err := f.srv.Auth.GetIdPSession(ctx, sid); auth.Reason(err) != auth.ReasonRevoked {
				t.Fatalf("the IdP session after the logout: %v, want it ended", err)
			}
		})
	}
}
