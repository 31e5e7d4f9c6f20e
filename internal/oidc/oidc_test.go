package oidc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/oidc/oidcmock"
)

func newProvider(t *testing.T, m *oidcmock.IdP) *Provider {
	t.Helper()
	c := &config.Config{OIDC: []config.OIDCProvider{{Name: "corp", Issuer: m.Issuer, ClientID: "airlock",
		Roles: map[string]string{"sec": "auditor", "ops-admins": "admin"}}}}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, _ := NewSet(c.OIDC).Get("corp")
	return p
}

// TestVerifyNegativeCorpus: every bad token is refused, with the reason the audit log gets.
func TestVerifyNegativeCorpus(t *testing.T) {
	m := oidcmock.New()
	defer m.Close()
	other := oidcmock.New() // another provider, with keys of its own
	defer other.Close()
	p := newProvider(t, m)
	ctx := context.Background()
	good := m.Claims("airlock", "alice", "dba")
	with := func(k string, v any) map[string]any {
		c := m.Claims("airlock", "alice", "dba")
		c[k] = v
		return c
	}
	without := func(k string) map[string]any {
		c := m.Claims("airlock", "alice", "dba")
		delete(c, k)
		return c
	}
	now := time.Now()
	if _, err := p.Verify(ctx, m.Sign(good), ""); err != nil {
		t.Fatalf("a good token is refused: %v", err)
	}
	corpus := []struct {
		name, token, reason string
	}{
		{"expired", m.Sign(with("exp", now.Add(-10*time.Minute).Unix())), auth.ReasonExpired},
		{"expired just beyond the skew", m.Sign(with("exp", now.Add(-31*time.Second).Unix())), auth.ReasonExpired},
		{"not yet valid", m.Sign(with("nbf", now.Add(10*time.Minute).Unix())), auth.ReasonNotYetValid},
		{"issued in the future", m.Sign(with("iat", now.Add(10*time.Minute).Unix())), auth.ReasonNotYetValid},
		{"without exp", m.Sign(without("exp")), auth.ReasonMalformed},
		{"wrong issuer", m.Sign(with("iss", "https://idp.example.org")), auth.ReasonWrongIssuer},
		{"wrong audience", m.Sign(with("aud", "another-client")), auth.ReasonWrongAudience},
		{"alg none", oidcmock.Unsigned(m.KeyID, good), auth.ReasonBadAlgorithm},
		{"HS256 keyed with the public key", m.HS256WithPublicKey(good), auth.ReasonBadAlgorithm},
		{"unknown kid", oidcmock.SignRS256(other.Key, "kid-nobody-published", good), auth.ReasonUnknownKey},
		{"tampered payload", oidcmock.Tamper(m.Sign(good), with("groups", []string{"ops-admins"})), auth.ReasonBadSignature},
		{"signed by another provider under our kid", oidcmock.SignRS256(other.Key, m.KeyID, good), auth.ReasonBadSignature},
		{"another provider's own token", other.Sign(other.Claims("airlock", "alice")), auth.ReasonWrongIssuer},
		{"not a JWT", "eyJhbGciOiJSUzI1NiJ9.bm9wZQ", auth.ReasonMalformed},
	}
	for _, tt := range corpus {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Verify(ctx, tt.token, "")
			if !errors.Is(err, auth.ErrBadCredentials) || auth.Reason(err) != tt.reason {
				t.Fatalf("Verify = %v (reason %q), want a refusal for %s", err, auth.Reason(err), tt.reason)
			}
		})
	}
	// Within the skew, an expired token still passes (clocks differ a little).
	if _, err := p.Verify(ctx, m.Sign(with("exp", now.Add(-10*time.Second).Unix())), ""); err != nil {
		t.Errorf("expired within the skew: %v", err)
	}
	if _, err := p.Verify(ctx, m.Sign(good), "a-nonce"); err == nil {
		t.Error("a token without the login's nonce was accepted")
	}
	if _, err := p.Verify(ctx, m.Sign(with("nonce", "a-nonce")), "a-nonce"); err != nil {
		t.Errorf("the login's nonce: %v", err)
	}
}

// TestKeyRotation: a token signed with a newly published key is accepted (the JWKS is fetched
// again on the unknown kid), and made-up kids do not make the gateway fetch more than once per
// interval.
func TestKeyRotation(t *testing.T) {
	m := oidcmock.New()
	defer m.Close()
	p := newProvider(t, m)
	clock := time.Now()
	p.Now = func() time.Time { return clock }
	ctx := context.Background()
	if _, err := p.Verify(ctx, m.Sign(m.Claims("airlock", "alice")), ""); err != nil {
		t.Fatal(err)
	}
	if n := m.KeyFetches(); n != 1 {
		t.Fatalf("%d key fetches for the first token", n)
	}
	// The refresh interval (10s) has not passed: unknown kids are refused from the cache.
	for i := 0; i < 20; i++ {
		tok := oidcmock.SignRS256(m.Key, "made-up", m.Claims("airlock", "alice"))
		if _, err := p.Verify(ctx, tok, ""); auth.Reason(err) != auth.ReasonUnknownKey {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if n := m.KeyFetches(); n != 1 {
		t.Errorf("made-up kids caused %d key fetches, want 1", n)
	}
	m.Rotate()
	clock = clock.Add(11 * time.Second)
	claims := m.Claims("airlock", "alice")
	claims["iat"], claims["exp"] = clock.Unix(), clock.Add(time.Hour).Unix()
	if _, err := p.Verify(ctx, m.Sign(claims), ""); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if n := m.KeyFetches(); n != 2 {
		t.Errorf("%d key fetches after rotation, want 2", n)
	}
}

func TestIdentityMapping(t *testing.T) {
	m := oidcmock.New()
	defer m.Close()
	p := newProvider(t, m)
	for _, tt := range []struct {
		name   string
		groups any
		want   []string
		role   auth.Role
	}{
		{"list", []any{"dba", "sec"}, []string{"dba", "sec"}, auth.RoleAuditor},
		{"string", "ops-admins", []string{"ops-admins"}, auth.RoleAdmin},
		{"highest role wins", []any{"sec", "ops-admins"}, []string{"ops-admins", "sec"}, auth.RoleAdmin},
		{"no groups", nil, nil, auth.RoleUser},
		{"unmapped", []any{"dba"}, []string{"dba"}, auth.RoleUser},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := p.Identity(map[string]any{"preferred_username": "alice", "groups": tt.groups})
			if err != nil || id.User != "alice" || id.Role != tt.role || len(id.Groups) != len(tt.want) || id.Provider != "corp" {
				t.Fatalf("Identity = %+v, %v", id, err)
			}
			for i := range tt.want {
				if id.Groups[i] != tt.want[i] {
					t.Fatalf("groups %v, want %v", id.Groups, tt.want)
				}
			}
		})
	}
	if _, err := p.Identity(map[string]any{"email": "a@example.org"}); auth.Reason(err) != auth.ReasonMalformed {
		t.Errorf("no user name claim: %v", err)
	}
	if _, err := p.Identity(map[string]any{"preferred_username": "a:b"}); err == nil {
		t.Error("user name with ':' accepted")
	}
}

// TestConfigRefusesSymmetricAlgorithms: HS* and none cannot be configured.
func TestConfigRefusesSymmetricAlgorithms(t *testing.T) {
	for _, alg := range []string{"HS256", "none"} {
		c := &config.Config{OIDC: []config.OIDCProvider{{Name: "x", Issuer: "https://idp.example.org", ClientID: "c", Algorithms: []string{alg}}}}
		c.SetDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("algorithm %s accepted", alg)
		}
	}
}
