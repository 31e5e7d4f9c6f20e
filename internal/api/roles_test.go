package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/auth"
)

// TestRoleMatrix calls every route as nobody, a user, a service account (role user, by API
// key), an auditor and an admin, and checks the status each gets. The expectations are written
// out here, apart from the route table, so that a change of a route's role shows up as a
// failing line; and a route missing here fails the test.
func TestRoleMatrix(t *testing.T) {
	const (
		public  = auth.Role("")
		user    = auth.RoleUser
		auditor = auth.RoleAuditor
		admin   = auth.RoleAdmin
	)
	matrix := []struct {
		pattern      string
		method, path string
		body         string
		need         auth.Role
		ok           int // status when the role suffices
	}{
		{"GET /healthz", "GET", "/healthz", "", public, 200},
		{"GET /metrics", "GET", "/metrics", "", public, 200},
		{"GET /api/v1/openapi.json", "GET", "/api/v1/openapi.json", "", public, 200},
		{"GET /api/v1/signing-keys", "GET", "/api/v1/signing-keys", "", public, 200},
		{"POST /api/v1/auth/login", "POST", "/api/v1/auth/login", `{}`, public, 400},
		{"POST /api/v1/auth/refresh", "POST", "/api/v1/auth/refresh", `{"token":"alt_x.y"}`, public, 401},
		{"POST /api/v1/auth/logout", "POST", "/api/v1/auth/logout", "", user, 200},
		{"POST /api/v1/auth/revoke", "POST", "/api/v1/auth/revoke", `{}`, admin, 400},
		{"GET /api/v1/auth/providers", "GET", "/api/v1/auth/providers", "", public, 200},
		{"POST /api/v1/auth/token", "POST", "/api/v1/auth/token", `{"token":"a.b.c"}`, public, 401},
		{"POST /api/v1/auth/oidc/authorize", "POST", "/api/v1/auth/oidc/authorize", `{}`, public, 400},
		{"POST /api/v1/auth/oidc/exchange", "POST", "/api/v1/auth/oidc/exchange", `{}`, public, 400},
		{"POST /api/v1/auth/oidc/device", "POST", "/api/v1/auth/oidc/device", `{}`, public, 400},
		{"POST /api/v1/auth/oidc/device/wait", "POST", "/api/v1/auth/oidc/device/wait", `{}`, public, 400},
		{"GET /api/v1/auth/oidc/web/start", "GET", "/api/v1/auth/oidc/web/start?provider=none", "", public, 404},
		{"GET /api/v1/auth/oidc/callback", "GET", "/api/v1/auth/oidc/callback", "", public, 303}, // back to the sign-in page
		{"GET /api/v1/whoami", "GET", "/api/v1/whoami", "", user, 200},
		{"GET /api/v1/listeners", "GET", "/api/v1/listeners", "", user, 200},
		{"POST /api/v1/ssh/certificate", "POST", "/api/v1/ssh/certificate", `{}`, user, 400},
		{"GET /api/v1/auth/session", "GET", "/api/v1/auth/session", "", public, 200},
		{"POST /api/v1/auth/session", "POST", "/api/v1/auth/session", `{}`, public, 403}, // no CSRF header
		{"DELETE /api/v1/auth/session", "DELETE", "/api/v1/auth/session", "", user, 204},
		{"GET /api/v1/sessions/{id}/live", "GET", "/api/v1/sessions/nope/live", "", user, 404},
		{"POST /api/v1/sessions/{id}/terminate", "POST", "/api/v1/sessions/s-bob/terminate", `{}`, admin, 400},
		{"POST /api/v1/targets/{name}/test", "POST", "/api/v1/targets/nope/test", "", admin, 404},
		{"GET /api/v1/users", "GET", "/api/v1/users", "", admin, 200},
		{"GET /api/v1/service-accounts", "GET", "/api/v1/service-accounts", "", admin, 200},
		{"POST /api/v1/service-accounts", "POST", "/api/v1/service-accounts", `{}`, admin, 400},
		{"POST /api/v1/service-accounts/{name}/revoke", "POST", "/api/v1/service-accounts/nobody/revoke", "", admin, 404},
		{"GET /api/v1/agents", "GET", "/api/v1/agents", "", admin, 200},
		{"POST /api/v1/agents", "POST", "/api/v1/agents", `{}`, admin, 400},
		{"POST /api/v1/agents/{name}/revoke", "POST", "/api/v1/agents/nope/revoke", "", admin, 404},
		{"GET /api/v1/sessions", "GET", "/api/v1/sessions", "", user, 200},
		{"GET /api/v1/sessions/{id}", "GET", "/api/v1/sessions/s-bob", "", user, 200},
		{"GET /api/v1/sessions/{id}/events", "GET", "/api/v1/sessions/s-bob/events", "", user, 200},
		{"GET /api/v1/sessions/{id}/verify", "GET", "/api/v1/sessions/s-bob/verify", "", user, 200},
		{"GET /api/v1/sessions/{id}/export", "GET", "/api/v1/sessions/s-bob/export", "", user, 200},
		{"POST /api/v1/sessions/{id}/hold", "POST", "/api/v1/sessions/s-bob/hold", `{"hold":false}`, admin, 200},
		{"GET /api/v1/targets", "GET", "/api/v1/targets", "", user, 200},
		{"GET /api/v1/targets/{name}", "GET", "/api/v1/targets/pg", "", user, 200},
		{"POST /api/v1/targets", "POST", "/api/v1/targets", `{}`, admin, 400},
		{"GET /api/v1/requests", "GET", "/api/v1/requests", "", auditor, 200},
		{"POST /api/v1/requests/{id}/approve", "POST", "/api/v1/requests/nope/approve", "", admin, 404},
		{"POST /api/v1/requests/{id}/deny", "POST", "/api/v1/requests/nope/deny", "", admin, 404},
		{"GET /api/v1/policies", "GET", "/api/v1/policies", "", auditor, 200},
		{"PUT /api/v1/policies", "PUT", "/api/v1/policies", `{"policies":[]}`, admin, 200},
		{"GET /api/v1/policies/explain", "GET", "/api/v1/policies/explain", "", auditor, 400},
		{"/api/v1/sessions", "DELETE", "/api/v1/sessions", "", public, 405},
		{"/api/v1/sessions/", "DELETE", "/api/v1/sessions/s-bob", "", public, 405},
		{"/api/v1/", "GET", "/api/v1/nothing-here", "", public, 404},
	}
	f := newFixture(t)
	var patterns []string
	declared := map[string]auth.Role{}
	for _, rt := range f.srv.routes() {
		patterns = append(patterns, rt.Pattern)
		declared[rt.Pattern] = rt.Role
	}
	var tested []string
	for _, m := range matrix {
		tested = append(tested, m.pattern)
		// The declared role, not only the behaviour: a handler's own check could hide a route
		// declared too open.
		if r, ok := declared[m.pattern]; ok && r != m.need {
			t.Errorf("%s is declared for role %q, want %q", m.pattern, r, m.need)
		}
	}
	slices.Sort(patterns)
	slices.Sort(tested)
	if !slices.Equal(patterns, tested) {
		t.Fatalf("the matrix does not list exactly the API's routes:\n routes %q\n matrix %q", patterns, tested)
	}

	// The callers: bob owns s-bob, so that "user" reaches his own session.
	key, _, err := f.srv.Auth.CreateServiceAccount(context.Background(), auth.ServiceAccount{Name: "bot", CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	callers := []struct {
		name string
		role auth.Role // "" = anonymous
		cred func(t *testing.T) string
	}{
		{"anonymous", "", func(*testing.T) string { return "" }},
		{"user", user, f.fresh("bob", user)},
		{"service account", user, func(*testing.T) string { return key }},
		{"auditor", auditor, f.fresh("carol", auditor)},
		{"admin", admin, f.fresh("root", admin)},
	}
	for _, m := range matrix {
		for _, c := range callers {
			want := m.ok
			switch {
			case m.need == public:
			case c.role == "":
				want = 401
			case c.role.Rank() < m.need.Rank():
				want = 403
			}
			if c.name == "service account" && m.pattern == "POST /api/v1/auth/logout" {
				want = 400 // an API key is revoked, not logged out
			}
			if c.name == "service account" && strings.HasPrefix(m.pattern, "GET /api/v1/sessions/{id}") {
				want = 404 // not its session
			}
			var rd io.Reader
			if m.body != "" {
				rd = strings.NewReader(m.body)
			}
			req := httptest.NewRequest(m.method, m.path, rd)
			if cred := c.cred(t); cred != "" {
				req.Header.Set("Authorization", "Bearer "+cred)
			}
			rw := httptest.NewRecorder()
			f.h.ServeHTTP(rw, req)
			if rw.Code != want {
				t.Errorf("%-45s as %-15s: %d, want %d (%s)", m.pattern, c.name, rw.Code, want, strings.TrimSpace(rw.Body.String()))
			}
		}
	}
}

// fresh returns a function issuing a new token for each call (logout revokes the one it is
// given).
func (f *fixture) fresh(name string, role auth.Role) func(t *testing.T) string {
	return func(t *testing.T) string {
		tok, _, err := f.srv.Auth.IssueToken(&auth.Identity{User: name, Role: role, Method: "password"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// TestOpenAPIRoles: every route is in the OpenAPI document with the role it is declared for.
func TestOpenAPIRoles(t *testing.T) {
	f := newFixture(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	_, b := f.do(t, "GET", "/api/v1/openapi.json", "", "")
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, rt := range f.srv.routes() {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok {
			continue // the catch-alls
		}
		want := string(rt.Role)
		if want == "" {
			want = "public"
		}
		raw, ok := doc.Paths[path][strings.ToLower(method)]
		var op struct {
			Role string `json:"x-airlock-role"`
		}
		if !ok || json.Unmarshal(raw, &op) != nil {
			t.Errorf("openapi.json lacks %s", rt.Pattern)
			continue
		}
		if op.Role != want {
			t.Errorf("openapi.json: %s has x-airlock-role %q, want %q", rt.Pattern, op.Role, want)
		}
	}
}
