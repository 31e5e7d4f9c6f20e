package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/oidc/oidcmock"
)

// oidcMockConfig is the gateway's oidc: section for a mock provider named corp.
func oidcMockConfig(m *oidcmock.IdP) string {
	return fmt.Sprintf(`
oidc:
  - name: corp
    issuer: %s
    client_id: airlock
    roles:
      ops-admins: admin
      sec: auditor
`, yq(m.Issuer))
}

// TestOIDCTokenExchange: an IdP token becomes a gateway token (airlock login --token), which is
// a PostgreSQL password; the IdP token itself is accepted as one too; groups map to roles.
func TestOIDCTokenExchange(t *testing.T) {
	m := oidcmock.New()
	defer m.Close()
	g := startGateway(t, gwConfig{Extra: oidcMockConfig(m)})
	home := t.TempDir()
	idTok := m.Sign(m.Claims("airlock", "idp-dora", "ops-admins", "dba"))
	r := cli(t, home, idTok+"\n", "login", "--gateway", g.apiURL(), "--token", "-")
	if r.Code != 0 || !strings.Contains(r.Stdout, "as idp-dora via corp (role admin, groups dba,ops-admins)") {
		t.Fatalf("login --token: %s", r)
	}
	r = cli(t, home, "", "login", "--gateway", g.apiURL(), "--token", idTok, "--print-token")
	gwTok := strings.TrimSpace(r.Stdout)
	if !strings.HasPrefix(gwTok, "alt_") {
		t.Fatalf("login --token --print-token: %s", r)
	}
	if code, err := g.pgLogin(t, "idp-dora", gwTok, "pg"); code != "" || err != nil {
		t.Fatalf("gateway token of an OIDC login as the PostgreSQL password: %q %v", code, err)
	}
	if code, err := g.pgLogin(t, "idp-dora", idTok, "pg"); code != "" || err != nil {
		t.Fatalf("the IdP token as the PostgreSQL password: %q %v", code, err)
	}
	code, body := g.api(t, gwTok, "GET", "/api/v1/whoami", nil)
	if code != 200 || !strings.Contains(string(body), `"role":"admin"`) || !strings.Contains(string(body), `"provider":"corp"`) {
		t.Fatalf("whoami: %d %s", code, body)
	}
	// Its role is the mapped one: an admin route answers.
	if code, body := g.api(t, gwTok, "GET", "/api/v1/service-accounts", nil); code != 200 {
		t.Fatalf("admin route with the OIDC admin's token: %d %s", code, body)
	}
	// A plain member gets user, and the admin route refuses her.
	userTok := m.Sign(m.Claims("airlock", "idp-ed", "dba"))
	if code, _ := g.api(t, userTok, "GET", "/api/v1/service-accounts", nil); code != 403 {
		t.Errorf("admin route with a plain member's IdP token: %d", code)
	}
	g.requireAudit(t, "login", map[string]string{"actor": "idp-dora", "outcome": "ok", "method": "oidc_token", "provider": "corp"})
}

// TestOIDCNegativeCorpus: each bad credential is refused with 401 by the API and 28P01 by the
// PostgreSQL listener, and each refusal is audited with its reason. The IdP here is a mock
// that signs what it is asked to: a real provider would not sign these.
func TestOIDCNegativeCorpus(t *testing.T) {
	m := oidcmock.New()
	defer m.Close()
	other := oidcmock.New()
	defer other.Close()
	g := startGateway(t, gwConfig{Extra: oidcMockConfig(m)})
	const user = "idp-mallory"
	claims := func(k string, v any) map[string]any {
		c := m.Claims("airlock", user, "dba")
		if k != "" {
			c[k] = v
		}
		return c
	}
	good := claims("", nil)
	now := time.Now()
	// A good token first, so that the corpus is not refused for want of a working setup.
	if code, body := g.api(t, "", "POST", "/api/v1/auth/token", map[string]string{"token": m.Sign(good)}); code != 200 {
		t.Fatalf("good IdP token: %d %s", code, body)
	}
	if code, err := g.pgLogin(t, user, m.Sign(good), "pg"); code != "" || err != nil {
		t.Fatalf("good IdP token over PostgreSQL: %q %v", code, err)
	}

	// Gateway-issued credentials that were good until revoked or expired.
	code, body := g.api(t, "", "POST", "/api/v1/auth/token", map[string]string{"token": m.Sign(good)})
	var ex struct{ Token string }
	json.Unmarshal(body, &ex)
	if code != 200 || ex.Token == "" {
		t.Fatalf("exchange: %d %s", code, body)
	}
	admin := g.adminToken(t)
	_, body = g.api(t, admin, "POST", "/api/v1/service-accounts", map[string]any{"name": "corpus-revoked"})
	var sa1 struct {
		APIKey string `json:"api_key"`
	}
	json.Unmarshal(body, &sa1)
	_, body = g.api(t, admin, "POST", "/api/v1/service-accounts", map[string]any{"name": "corpus-expiring", "expires_in": "1s"})
	var sa2 struct {
		APIKey string `json:"api_key"`
	}
	json.Unmarshal(body, &sa2)
	if sa1.APIKey == "" || sa2.APIKey == "" {
		t.Fatalf("service accounts not created: %s", body)
	}
	if code, _ := g.pgLogin(t, "corpus-revoked", sa1.APIKey, "pg"); code != "" {
		t.Fatalf("the API key does not work before its revocation: %q", code)
	}
	if code, body := g.api(t, admin, "POST", "/api/v1/service-accounts/corpus-revoked/revoke", nil); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	preRevocation := m.Sign(good)       // issued before the user's tokens are revoked
	time.Sleep(1100 * time.Millisecond) // iat has a resolution of a second: be after it
	if code, body := g.api(t, admin, "POST", "/api/v1/auth/revoke", map[string]string{"user": user}); code != 200 {
		t.Fatalf("revoke user: %d %s", code, body)
	}
	// The expiring key's second is over by now (the sleep above).

	corpus := []struct {
		name, user, secret, reason string
	}{
		{"expired", user, m.Sign(claims("exp", now.Add(-10*time.Minute).Unix())), "expired"},
		{"not yet valid", user, m.Sign(claims("nbf", now.Add(10*time.Minute).Unix())), "not_yet_valid"},
		{"wrong issuer", user, m.Sign(claims("iss", "https://idp.example.org")), "wrong_issuer"},
		{"wrong audience", user, m.Sign(claims("aud", "another-client")), "wrong_audience"},
		{"alg none", user, oidcmock.Unsigned(m.KeyID, good), "bad_algorithm"},
		{"HS256 keyed with the public key", user, m.HS256WithPublicKey(good), "bad_algorithm"},
		{"unknown kid", user, oidcmock.SignRS256(other.Key, "kid-nobody-published", good), "unknown_key"},
		{"tampered payload", user, oidcmock.Tamper(m.Sign(good), claims("groups", []string{"ops-admins"})), "bad_signature"},
		{"valid signature from another provider", user, oidcmock.SignRS256(other.Key, m.KeyID, good), "bad_signature"},
		{"IdP token issued before a revocation", user, preRevocation, "revoked"},
		{"gateway token after revocation", user, ex.Token, "revoked"},
		{"API key after revocation", "corpus-revoked", sa1.APIKey, "revoked"},
		{"API key after expiry", "corpus-expiring", sa2.APIKey, "expired"},
	}
	for _, tt := range corpus {
		t.Run(tt.name, func(t *testing.T) {
			// HTTP: as a bearer credential.
			if code, body := g.api(t, tt.secret, "GET", "/api/v1/whoami", nil); code != 401 {
				t.Errorf("bearer: %d %s, want 401", code, body)
			}
			// HTTP: IdP tokens through the exchange too.
			if strings.HasPrefix(tt.secret, "eyJ") {
				if code, body := g.api(t, "", "POST", "/api/v1/auth/token", map[string]string{"token": tt.secret}); code != 401 {
					t.Errorf("exchange: %d %s, want 401", code, body)
				}
				g.requireAudit(t, "login", map[string]string{"outcome": "denied", "method": "oidc_token", "reason": tt.reason})
			}
			// PostgreSQL.
			if code, err := g.pgLogin(t, tt.user, tt.secret, "pg"); code != "28P01" {
				t.Errorf("postgres: %q %v, want 28P01", code, err)
			}
			g.requireAudit(t, "login", map[string]string{"actor": tt.user, "outcome": "denied", "protocol": "postgres", "reason": tt.reason})
		})
	}
	// After the revocation, a new IdP token works again. iat has a resolution of a second, so
	// a token of the revocation's second counts as issued before it: this one is a second later.
	if code, err := g.pgLogin(t, user, m.Sign(claims("iat", time.Now().Unix()+1)), "pg"); code != "" || err != nil {
		t.Errorf("IdP token issued after the revocation: %q %v", code, err)
	}
}
