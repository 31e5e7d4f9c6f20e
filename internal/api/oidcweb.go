package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/oidc"
)

// The web UI's OIDC sign-in: an authorization-code flow with PKCE run by the gateway itself,
// the browser only following redirects. Its state (provider, state, nonce, PKCE verifier,
// redirect URL) lives in a cookie sealed with a key derived from the token key, so any gateway
// sharing that key finishes a sign-in another started, and nothing of it can be read or forged
// in the browser.
const (
	// OIDCFlowCookie holds a browser's sign-in in progress, for 10 minutes.
	OIDCFlowCookie = "airlock_oidc_flow"
	oidcFlowPath   = "/"
	oidcFlowTTL    = 10 * time.Minute
	oidcSealWeb    = "oidc-web-flow"
	// OIDCCallbackPath is where the provider sends the browser back; register
	// https://GATEWAY/api/v1/auth/oidc/callback (or web_redirect_url) at the provider.
	OIDCCallbackPath = "/api/v1/auth/oidc/callback"
)

type oidcFlow struct {
	Provider string    `json:"p"`
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Redirect string    `json:"r"`
	Expires  time.Time `json:"e"`
}

func random32() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// webRedirect is the callback URL the provider is told: the provider's web_redirect_url, or
// this gateway's own address as the browser reached it.
func webRedirect(r *http.Request, p *oidc.Provider) string {
	if p.Config.WebRedirectURL != "" {
		return p.Config.WebRedirectURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + OIDCCallbackPath
}

// oidcWebStart begins a browser sign-in with a provider: it sets the sealed flow cookie and
// sends the browser to the provider's authorization endpoint.
func (s *Server) oidcWebStart(w http.ResponseWriter, r *http.Request) error {
	if s.OIDC == nil {
		return errorf(http.StatusNotFound, "not_found", "no OIDC provider is configured")
	}
	p, err := s.provider(r.URL.Query().Get("provider"))
	if err != nil {
		return err
	}
	f := oidcFlow{Provider: p.Config.Name, State: random32(), Nonce: random32(), Verifier: random32(),
		Redirect: webRedirect(r, p), Expires: time.Now().Add(oidcFlowTTL).UTC()}
	sum := sha256.Sum256([]byte(f.Verifier))
	u, err := p.AuthCodeURL(r.Context(), f.Redirect, f.State, base64.RawURLEncoding.EncodeToString(sum[:]), f.Nonce)
	if err != nil {
		return &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "the identity provider could not be reached (see the gateway log)", Err: err}
	}
	b, _ := json.Marshal(f)
	// SameSite=Lax: the provider's redirect back is a cross-site top-level navigation, which a
	// Strict cookie would not come back with.
	http.SetCookie(w, &http.Cookie{Name: OIDCFlowCookie, Value: s.Auth.Seal(oidcSealWeb, b), Path: oidcFlowPath,
		MaxAge: int(oidcFlowTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, u, http.StatusSeeOther)
	return nil
}

// oidcWebCallback finishes a browser sign-in: it checks the state against the flow cookie,
// redeems the code with the PKCE verifier, verifies the ID token and its nonce, audits the login
// and sets the session cookie, then sends the browser to the UI. Every failure goes back to the
// sign-in page with a message; the refused ones are audited.
func (s *Server) oidcWebCallback(w http.ResponseWriter, r *http.Request) error {
	fail := func(msg string) error {
		http.SetCookie(w, &http.Cookie{Name: OIDCFlowCookie, Path: oidcFlowPath, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/#/login?error="+url.QueryEscape(msg), http.StatusSeeOther)
		return nil
	}
	q := r.URL.Query()
	var f oidcFlow
	c, err := r.Cookie(OIDCFlowCookie)
	if err != nil {
		return fail("the sign-in expired or was started in another browser: sign in again")
	}
	b, err := s.Auth.Open(oidcSealWeb, c.Value)
	if err != nil || json.Unmarshal(b, &f) != nil || time.Now().After(f.Expires) {
		return fail("the sign-in expired or was started in another browser: sign in again")
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		s.log().Warn("oidc web sign-in: state mismatch", "provider", f.Provider, "remote", r.RemoteAddr)
		return fail("the sign-in answer does not belong to this browser's sign-in: sign in again")
	}
	if e := q.Get("error"); e != "" {
		s.log().Info("oidc web sign-in: the provider refused", "provider", f.Provider, "error", e, "description", q.Get("error_description"))
		s.audit(r, audit.Entry{Action: audit.ActionLogin, Outcome: audit.Denied,
			Detail: map[string]string{"method": "oidc", "via": "web", "provider": f.Provider, "reason": "idp_error", "idp_error": e}})
		return fail("the identity provider refused the sign-in: " + e)
	}
	if q.Get("code") == "" {
		return fail("the identity provider sent no code")
	}
	p, ok := s.OIDC.Get(f.Provider)
	if !ok {
		return fail("the identity provider " + f.Provider + " is no longer configured")
	}
	toks, err := p.Exchange(r.Context(), q.Get("code"), f.Verifier, f.Redirect)
	if err == nil {
		var id *auth.Identity
		if id, err = s.oidcIdentity(r, p, toks, f.Nonce); err == nil {
			return s.finishWebOIDC(w, r, p, id)
		}
	}
	var ae *Error
	if werr := s.oidcFailureVia(r, p, "oidc", "web", err); errors.As(werr, &ae) {
		return fail(ae.Message)
	}
	return fail("sign-in failed")
}

// finishWebOIDC audits the login and sets the session cookie, for the provider's token lifetime.
func (s *Server) finishWebOIDC(w http.ResponseWriter, r *http.Request, p *oidc.Provider, id *auth.Identity) error {
	token, exp, err := s.Auth.IssueTokenUntil(id, time.Now().Add(p.Config.TokenTTL))
	if err != nil {
		return err
	}
	if err := s.auditIssue(r, id, token, exp, map[string]string{"method": "oidc", "via": "web", "provider": p.Config.Name}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: OIDCFlowCookie, Path: oidcFlowPath, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	s.setSessionCookie(w, r, token, exp)
	s.log().Info("web login", "user", id.User, "role", id.Role, "provider", p.Config.Name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/#/sessions", http.StatusSeeOther)
	return nil
}
