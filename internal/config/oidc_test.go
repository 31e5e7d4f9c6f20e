package config

import (
	"strings"
	"testing"
	"time"
)

func TestOIDCDefaultsAndValidation(t *testing.T) {
	c := &Config{OIDC: []OIDCProvider{{Name: "corp", Issuer: "https://login.example.com", ClientID: "airlock"}}}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p := c.OIDC[0]
	if p.UsernameClaim != "preferred_username" || p.GroupsClaim != "groups" || p.Audiences[0] != "airlock" ||
		p.ClockSkew != 30*time.Second || p.TokenTTL != time.Hour || len(p.Algorithms) != 10 || p.Scopes[len(p.Scopes)-1] != "offline_access" {
		t.Errorf("defaults: %+v", p)
	}
	for _, tt := range []struct {
		name string
		p    OIDCProvider
		want string
	}{
		{"http elsewhere than loopback", OIDCProvider{Name: "a", Issuer: "http://login.example.com", ClientID: "c"}, "https://"},
		{"no client id", OIDCProvider{Name: "a", Issuer: "https://x.example"}, "client_id"},
		{"bad role", OIDCProvider{Name: "a", Issuer: "https://x.example", ClientID: "c", Roles: map[string]string{"g": "root"}}, "roles"},
		{"HMAC", OIDCProvider{Name: "a", Issuer: "https://x.example", ClientID: "c", Algorithms: []string{"HS256"}}, "not accepted"},
		{"both secrets", OIDCProvider{Name: "a", Issuer: "https://x.example", ClientID: "c", ClientSecret: "s", ClientSecretEnv: "E"}, "at most one"},
		{"name", OIDCProvider{Name: "a b", Issuer: "https://x.example", ClientID: "c"}, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{OIDC: []OIDCProvider{tt.p}}
			c.SetDefaults()
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error about %s", err, tt.want)
			}
		})
	}
	c = &Config{OIDC: []OIDCProvider{{Name: "a", Issuer: "http://127.0.0.1:9998", ClientID: "c"}, {Name: "a", Issuer: "https://x.example", ClientID: "c"}}}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate names: %v", err)
	}
}
