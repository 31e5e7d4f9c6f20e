package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
)

// Provider is one configured OpenID Connect provider. Discovery happens on first use (and is
// retried on the next use when it failed), so that a provider that is down does not stop the
// gateway from starting.
type Provider struct {
	Config config.OIDCProvider
	// HTTP is the client for the provider's endpoints; http.DefaultClient with a timeout when nil.
	HTTP *http.Client
	// Now is time.Now when nil.
	Now func() time.Time

	mu       sync.Mutex
	provider *gooidc.Provider
	keys     *keySet
	meta     struct {
		JWKSURL       string `json:"jwks_uri"`
		DeviceAuthURL string `json:"device_authorization_endpoint"`
	}
}

// Set is the configured providers, by name.
type Set struct {
	byName map[string]*Provider
	order  []string
}

// NewSet returns the providers of cfgs (already defaulted and validated by config).
func NewSet(cfgs []config.OIDCProvider) *Set {
	s := &Set{byName: map[string]*Provider{}}
	for _, c := range cfgs {
		s.byName[c.Name] = &Provider{Config: c}
		s.order = append(s.order, c.Name)
	}
	return s
}

// Get returns the provider named name; with name "", the only provider when there is one.
func (s *Set) Get(name string) (*Provider, bool) {
	if s == nil {
		return nil, false
	}
	if name == "" && len(s.order) == 1 {
		name = s.order[0]
	}
	p, ok := s.byName[name]
	return p, ok
}

// ByIssuer returns the provider whose issuer is iss.
func (s *Set) ByIssuer(iss string) (*Provider, bool) {
	if s == nil {
		return nil, false
	}
	for _, n := range s.order {
		if s.byName[n].Config.Issuer == iss {
			return s.byName[n], true
		}
	}
	return nil, false
}

// All returns the providers in configuration order.
func (s *Set) All() []*Provider {
	if s == nil {
		return nil
	}
	out := make([]*Provider, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, s.byName[n])
	}
	return out
}

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Provider) client() *http.Client {
	if p.HTTP != nil {
		return p.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (p *Provider) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, p.client())
}

// discover fetches the provider's metadata once.
func (p *Provider) discover(ctx context.Context) (*gooidc.Provider, *keySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, p.keys, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prov, err := gooidc.NewProvider(p.ctx(ctx), p.Config.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("oidc %s: discovery: %w", p.Config.Name, err)
	}
	if err := prov.Claims(&p.meta); err != nil {
		return nil, nil, fmt.Errorf("oidc %s: discovery: %w", p.Config.Name, err)
	}
	if p.meta.JWKSURL == "" {
		return nil, nil, fmt.Errorf("oidc %s: discovery document has no jwks_uri", p.Config.Name)
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range p.Config.Algorithms {
		algs = append(algs, jose.SignatureAlgorithm(a))
	}
	p.keys = &keySet{url: p.meta.JWKSURL, client: p.client(), algs: algs, minInterval: p.Config.JWKSRefreshInterval, now: p.now}
	p.provider = prov
	return prov, p.keys, nil
}

// oauth2Config is the provider's OAuth 2 client configuration.
func (p *Provider) oauth2Config(ctx context.Context, redirectURL string) (*oauth2.Config, error) {
	prov, _, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ep := prov.Endpoint()
	ep.DeviceAuthURL = p.meta.DeviceAuthURL
	secret := p.Config.Secret()
	if secret == "" {
		// A public client: no client authentication, the client id in the body.
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: p.Config.ClientID, ClientSecret: secret, Endpoint: ep,
		RedirectURL: redirectURL, Scopes: p.Config.Scopes}, nil
}

// Claims are the validated claims of an IdP token.
type Claims struct {
	Subject string
	Expiry  time.Time
	Raw     map[string]any
}

// header is the JOSE header of a compact JWS, read before verification to tell why a token
// is refused.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// unverified returns the header and claims of a compact JWS without checking anything: only to
// choose the provider by iss and to name the reason of a refusal.
func unverified(raw string) (header, map[string]any, error) {
	parts := strings.Split(raw, ".")
	var h header
	if len(parts) != 3 {
		return h, nil, errors.New("not a compact JWS (want three dot-separated parts)")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return h, nil, errors.New("malformed JOSE header")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err != nil || json.Unmarshal(cb, &claims) != nil {
		return h, nil, errors.New("malformed claims")
	}
	return h, claims, nil
}

// Issuer returns the unverified iss of a JWT, to pick the provider that must verify it.
func Issuer(raw string) string {
	_, c, err := unverified(raw)
	if err != nil {
		return ""
	}
	s, _ := c["iss"].(string)
	return s
}

// Verify checks an IdP token (an ID token, or a JWT access token with an accepted audience):
// algorithm, signature with the provider's published keys, issuer, audience, expiry and
// not-before (with the configured skew) and, when nonce is not empty, the nonce. A refusal is
// an *auth.Failure that says why.
func (p *Provider) Verify(ctx context.Context, raw, nonce string) (*Claims, error) {
	h, uc, err := unverified(raw)
	if err != nil {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: err.Error()}
	}
	if !slices.Contains(p.Config.Algorithms, h.Alg) {
		return nil, &auth.Failure{Reason: auth.ReasonBadAlgorithm, Detail: fmt.Sprintf("alg %q is not accepted", h.Alg)}
	}
	if iss, _ := uc["iss"].(string); iss != p.Config.Issuer {
		return nil, &auth.Failure{Reason: auth.ReasonWrongIssuer, Detail: fmt.Sprintf("iss %q, want %q", iss, p.Config.Issuer)}
	}
	_, keys, err := p.discover(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	if _, err := keys.keysFor(p.ctx(ctx), h.Kid); errors.Is(err, errUnknownKey) {
		return nil, &auth.Failure{Reason: auth.ReasonUnknownKey, Detail: fmt.Sprintf("kid %q", h.Kid)}
	} else if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	v := gooidc.NewVerifier(p.Config.Issuer, keys, &gooidc.Config{
		SupportedSigningAlgs: p.Config.Algorithms,
		// Audience and time are checked below: several audiences may be accepted, and the
		// skew is ours to choose.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
	})
	tok, err := v.Verify(p.ctx(ctx), raw)
	if err != nil {
		return nil, &auth.Failure{Reason: auth.ReasonBadSignature, Detail: err.Error()}
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: err.Error()}
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(p.Config.Audiences, a) }) {
		return nil, &auth.Failure{Reason: auth.ReasonWrongAudience, Detail: fmt.Sprintf("aud %q, want one of %q", tok.Audience, p.Config.Audiences)}
	}
	now, skew := p.now(), p.Config.ClockSkew
	if tok.Expiry.IsZero() {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: "token without exp"}
	}
	if !now.Before(tok.Expiry.Add(skew)) {
		return nil, &auth.Failure{Reason: auth.ReasonExpired, Detail: fmt.Sprintf("exp %s", tok.Expiry.UTC().Format(time.RFC3339))}
	}
	if nbf, ok := numericDate(claims["nbf"]); ok && now.Add(skew).Before(nbf) {
		return nil, &auth.Failure{Reason: auth.ReasonNotYetValid, Detail: fmt.Sprintf("nbf %s", nbf.UTC().Format(time.RFC3339))}
	}
	if !tok.IssuedAt.IsZero() && now.Add(skew).Before(tok.IssuedAt) {
		return nil, &auth.Failure{Reason: auth.ReasonNotYetValid, Detail: fmt.Sprintf("iat %s is in the future", tok.IssuedAt.UTC().Format(time.RFC3339))}
	}
	if nonce != "" && tok.Nonce != nonce {
		return nil, &auth.Failure{Reason: auth.ReasonBadSignature, Detail: "nonce does not match the login's"}
	}
	return &Claims{Subject: tok.Subject, Expiry: tok.Expiry, Raw: claims}, nil
}

func numericDate(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0), true
	case json.Number:
		i, err := n.Int64()
		return time.Unix(i, 0), err == nil
	}
	return time.Time{}, false
}

// Identity maps validated claims to an Airlock identity: the user name from username_claim
// (with username_prefix), the groups from groups_claim (a string or a list), the highest role
// the roles mapping gives those groups.
func (p *Provider) Identity(c map[string]any) (*auth.Identity, error) {
	name, _ := c[p.Config.UsernameClaim].(string)
	if name == "" {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: fmt.Sprintf("no %q claim for the user name", p.Config.UsernameClaim)}
	}
	name = p.Config.UsernamePrefix + name
	if strings.ContainsAny(name, ":/ \t") {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: fmt.Sprintf("user name %q may not contain ':', '/' or spaces", name)}
	}
	var groups []string
	switch g := c[p.Config.GroupsClaim].(type) {
	case string:
		if g != "" {
			groups = []string{g}
		}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok && s != "" {
				groups = append(groups, s)
			}
		}
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	role := auth.RoleUser
	for _, g := range groups {
		if r, ok := p.Config.Roles[g]; ok && auth.Role(r).Rank() > role.Rank() {
			role = auth.Role(r)
		}
	}
	return &auth.Identity{User: name, Groups: groups, Role: role, Method: "oidc", Via: "oidc", Provider: p.Config.Name}, nil
}

// AuthCodeURL returns the provider's authorization URL for a login with PKCE (the caller keeps
// the verifier of challenge), state and nonce, redirecting to redirectURL.
func (p *Provider) AuthCodeURL(ctx context.Context, redirectURL, state, challenge, nonce string) (string, error) {
	oc, err := p.oauth2Config(ctx, redirectURL)
	if err != nil {
		return "", err
	}
	return oc.AuthCodeURL(state, oauth2.SetAuthURLParam("code_challenge", challenge),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"), gooidc.Nonce(nonce)), nil
}

// Tokens is what a grant returned.
type Tokens struct {
	IDToken      string
	AccessToken  string
	RefreshToken string
}

func tokens(t *oauth2.Token) Tokens {
	id, _ := t.Extra("id_token").(string)
	return Tokens{IDToken: id, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken}
}

// Exchange redeems an authorization code with its PKCE verifier.
func (p *Provider) Exchange(ctx context.Context, code, verifier, redirectURL string) (Tokens, error) {
	oc, err := p.oauth2Config(ctx, redirectURL)
	if err != nil {
		return Tokens{}, err
	}
	t, err := oc.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Tokens{}, &auth.Failure{Reason: auth.ReasonIdPRefused, Detail: err.Error()}
	}
	return tokens(t), nil
}

// DeviceAuth starts the device flow.
func (p *Provider) DeviceAuth(ctx context.Context) (*oauth2.DeviceAuthResponse, error) {
	oc, err := p.oauth2Config(ctx, "")
	if err != nil {
		return nil, err
	}
	if oc.Endpoint.DeviceAuthURL == "" {
		return nil, fmt.Errorf("oidc %s: the provider has no device authorization endpoint", p.Config.Name)
	}
	return oc.DeviceAuth(p.ctx(ctx))
}

// DeviceWait polls the token endpoint until the user approved or denied the device code, it
// expired, or ctx ends.
func (p *Provider) DeviceWait(ctx context.Context, da *oauth2.DeviceAuthResponse) (Tokens, error) {
	oc, err := p.oauth2Config(ctx, "")
	if err != nil {
		return Tokens{}, err
	}
	t, err := oc.DeviceAccessToken(p.ctx(ctx), da)
	if err != nil {
		return Tokens{}, &auth.Failure{Reason: auth.ReasonIdPRefused, Detail: err.Error()}
	}
	return tokens(t), nil
}

// Refresh renews the IdP tokens with a refresh token. The provider refuses when the session
// ended or the user was disabled.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	oc, err := p.oauth2Config(ctx, "")
	if err != nil {
		return Tokens{}, err
	}
	t, err := oc.TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return Tokens{}, &auth.Failure{Reason: auth.ReasonIdPRefused, Detail: err.Error()}
	}
	out := tokens(t)
	if out.RefreshToken == "" {
		out.RefreshToken = refreshToken
	}
	return out, nil
}

// UserInfo returns the claims of the userinfo endpoint, for a refresh that returned no ID
// token.
func (p *Provider) UserInfo(ctx context.Context, accessToken string) (map[string]any, error) {
	prov, _, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ui, err := prov.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken}))
	if err != nil {
		return nil, &auth.Failure{Reason: auth.ReasonIdPRefused, Detail: err.Error()}
	}
	var c map[string]any
	if err := ui.Claims(&c); err != nil {
		return nil, err
	}
	return c, nil
}

// LooksLikeJWT reports whether a secret is shaped like a compact JWS (three base64url parts,
// the first a JSON object): what a client puts in its password field when it brings an IdP
// token instead of a gateway token.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Authenticate checks an IdP token presented directly as a credential (a bearer token, a
// PostgreSQL password): the provider is the one whose issuer the token names, and the identity
// lasts until the token expires. revoked, when not nil, refuses a user's tokens issued before
// an admin revoked them.
func (s *Set) Authenticate(ctx context.Context, raw string, revoked func(ctx context.Context, user string, issued time.Time) error) (*auth.Identity, error) {
	iss := Issuer(raw)
	p, ok := s.ByIssuer(iss)
	if !ok {
		return nil, &auth.Failure{Reason: auth.ReasonWrongIssuer, Detail: fmt.Sprintf("no provider has the issuer %q", iss)}
	}
	c, err := p.Verify(ctx, raw, "")
	if err != nil {
		return nil, err
	}
	id, err := p.Identity(c.Raw)
	if err != nil {
		return nil, err
	}
	if revoked != nil {
		issued, _ := numericDate(c.Raw["iat"])
		if err := revoked(ctx, id.User, issued); err != nil {
			return nil, err
		}
	}
	id.Method = "oidc_token"
	id.ExpiresAt = c.Expiry
	return id, nil
}

// IssuedAt returns the iat of validated claims (zero when absent).
func (c *Claims) IssuedAt() time.Time {
	t, _ := numericDate(c.Raw["iat"])
	return t
}
