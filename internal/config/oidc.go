package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// OIDCProvider is an OpenID Connect identity provider whose users may log in (docs/identity.md).
type OIDCProvider struct {
	// Name identifies the provider (airlock login --provider NAME). Required, unique.
	Name string `yaml:"name"`
	// Issuer is the provider's issuer URL; discovery reads ISSUER/.well-known/openid-configuration.
	// Required; tokens must carry exactly this iss.
	Issuer string `yaml:"issuer"`
	// ClientID is the gateway's client at the provider. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates the gateway to the provider's token endpoint; empty for a
	// public client (PKCE alone). ClientSecretEnv reads it from an environment variable instead.
	ClientSecret    string `yaml:"client_secret"`
	ClientSecretEnv string `yaml:"client_secret_env"`
	// WebRedirectURL is where the provider sends the browser back after a sign-in in the web
	// UI; it must end in /api/v1/auth/oidc/callback and be registered at the provider. Default:
	// the gateway's API address as the browser reached it (http(s)://HOST/api/v1/auth/oidc/callback);
	// set it when the gateway is behind a proxy that changes the scheme or host.
	WebRedirectURL string `yaml:"web_redirect_url"`
	// Scopes requested at login. Default: openid, profile, email, groups, offline_access (the
	// last one gives the refresh token that renews gateway tokens).
	Scopes []string `yaml:"scopes"`
	// UsernameClaim is the claim whose value becomes the Airlock user name. Default
	// preferred_username.
	UsernameClaim string `yaml:"username_claim"`
	// UsernamePrefix is put before every user name from this provider (e.g. "corp:"-less names
	// like "corp-"), to keep them apart from local users. Default "".
	UsernamePrefix string `yaml:"username_prefix"`
	// GroupsClaim is the claim holding the user's groups: a string or a list of strings.
	// Default groups.
	GroupsClaim string `yaml:"groups_claim"`
	// Roles maps a group to an Airlock role (user, auditor, admin); a user gets the highest
	// role of her groups, and user when none maps. Default: none.
	Roles map[string]string `yaml:"roles"`
	// Audiences are the aud values accepted in a token. Default: [client_id].
	Audiences []string `yaml:"audiences"`
	// Algorithms are the signature algorithms accepted. Default RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512, EdDSA. "none" and the HMAC ones (HS*) are refused:
	// a provider signs with a private key, and HMAC would let its public key sign.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the tolerance on exp, nbf and iat. Default 30s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// JWKSRefreshInterval is the least time between two fetches of the provider's keys when a
	// token names an unknown kid (key rotation), so that made-up kids cannot make the gateway
	// hammer the provider. Default 10s.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// TokenTTL is the lifetime of the gateway tokens issued to this provider's users; they are
	// renewed (airlock login --refresh, or automatically by the CLI) while the provider's
	// session lives. Default 1h, and never longer than auth.token_ttl.
	TokenTTL time.Duration `yaml:"token_ttl"`
}

// DefaultOIDCAlgorithms are the signature algorithms accepted when a provider names none.
var DefaultOIDCAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Secret returns the client secret, from client_secret_env when set.
func (p *OIDCProvider) Secret() string {
	if p.ClientSecretEnv != "" {
		return os.Getenv(p.ClientSecretEnv)
	}
	return p.ClientSecret
}

func (p *OIDCProvider) setDefaults() {
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
	}
	if p.UsernameClaim == "" {
		p.UsernameClaim = "preferred_username"
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if len(p.Audiences) == 0 {
		p.Audiences = []string{p.ClientID}
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = slices.Clone(DefaultOIDCAlgorithms)
	}
	if p.ClockSkew == 0 {
		p.ClockSkew = 30 * time.Second
	}
	if p.JWKSRefreshInterval == 0 {
		p.JWKSRefreshInterval = 10 * time.Second
	}
	if p.TokenTTL == 0 {
		p.TokenTTL = time.Hour
	}
}

func validateOIDC(ps []OIDCProvider) error {
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Name == "" || strings.ContainsAny(p.Name, " /:") {
			return fmt.Errorf("config: oidc: provider name %q must be non-empty, without spaces, '/' or ':'", p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("config: oidc: provider %q defined twice", p.Name)
		}
		seen[p.Name] = true
		u, err := url.Parse(p.Issuer)
		if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname()))) || u.Host == "" {
			return fmt.Errorf("config: oidc %q: issuer must be an https:// URL (http:// only on loopback), not %q", p.Name, p.Issuer)
		}
		if p.ClientID == "" {
			return fmt.Errorf("config: oidc %q: client_id is required", p.Name)
		}
		if p.WebRedirectURL != "" {
			w, err := url.Parse(p.WebRedirectURL)
			if err != nil || (w.Scheme != "https" && !(w.Scheme == "http" && loopbackHost(w.Hostname()))) || w.Host == "" ||
				!strings.HasSuffix(w.Path, "/api/v1/auth/oidc/callback") {
				return fmt.Errorf("config: oidc %q: web_redirect_url must be an https:// URL (http:// only on loopback) ending in /api/v1/auth/oidc/callback, not %q", p.Name, p.WebRedirectURL)
			}
		}
		if p.ClientSecret != "" && p.ClientSecretEnv != "" {
			return fmt.Errorf("config: oidc %q: set at most one of client_secret and client_secret_env", p.Name)
		}
		for g, r := range p.Roles {
			switch r {
			case "user", "auditor", "admin":
			default:
				return fmt.Errorf("config: oidc %q: roles: group %q maps to %q, not user, auditor or admin", p.Name, g, r)
			}
		}
		for _, a := range p.Algorithms {
			if !slices.Contains(DefaultOIDCAlgorithms, a) {
				return fmt.Errorf("config: oidc %q: algorithm %q is not accepted (only asymmetric ones: %s)", p.Name, a, strings.Join(DefaultOIDCAlgorithms, ", "))
			}
		}
		if p.ClockSkew < 0 || p.ClockSkew > 5*time.Minute {
			return fmt.Errorf("config: oidc %q: clock_skew must be between 0 and 5m", p.Name)
		}
		if p.TokenTTL < 0 || p.JWKSRefreshInterval < 0 {
			return fmt.Errorf("config: oidc %q: durations must not be negative", p.Name)
		}
	}
	return nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
