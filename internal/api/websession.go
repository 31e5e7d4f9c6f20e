package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// The web UI signs in to a cookie instead of holding a bearer token in script: the cookie is
// HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it). Every
// state-changing request authenticated by the cookie must also carry the session's CSRF token
// in the X-Airlock-CSRF header, which only a page of this origin can learn (from the sign-in
// answer or GET /api/v1/auth/session; no CORS is ever granted). Bearer tokens are unchanged:
// a request with an Authorization header is authenticated by it alone and the cookie is ignored.

const (
	// SessionCookie holds the gateway token of a web UI sign-in.
	SessionCookie = "airlock_session"
	// CSRFHeader carries the CSRF token of the cookie's session on POST, PUT, PATCH, DELETE.
	CSRFHeader = "X-Airlock-CSRF"
)

// LoginMethod is a way to sign in to the web UI other than a local user's password, offered on
// its sign-in page. The OIDC sign-in (issue 2) adds {"oidc", "Sign in with SSO", "/api/v1/auth/oidc/start"}
// and, at the end of its callback, calls StartWebSession with the identity it established.
type LoginMethod struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	URL   string `json:"url"`
}

// csrfToken derives a session's CSRF token from its gateway token: unguessable without the
// token, and the token cannot be recovered from it.
func csrfToken(token string) string {
	sum := sha256.Sum256([]byte("airlock-csrf\x00" + token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// cookieIdentity authenticates r by the session cookie. ok is false when there is none.
func (s *Server) cookieIdentity(r *http.Request) (id *auth.Identity, ok bool, err error) {
	c, cerr := r.Cookie(SessionCookie)
	if cerr != nil || c.Value == "" {
		return nil, false, nil
	}
	id, err = s.Auth.VerifyTokenContext(r.Context(), c.Value)
	if err != nil {
		s.authFailure()
		return nil, true, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "your sign-in has expired or is invalid: sign in again"}
	}
	if !safeMethod(r.Method) {
		got := r.Header.Get(CSRFHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(c.Value))) != 1 {
			return nil, true, errorf(http.StatusForbidden, "csrf", "missing or wrong %s header: a state-changing request signed in by cookie must carry the session's CSRF token", CSRFHeader)
		}
	}
	return id, true, nil
}

type webSession struct {
	Authenticated bool          `json:"authenticated"`
	User          string        `json:"user,omitempty"`
	Role          auth.Role     `json:"role,omitempty"`
	Groups        []string      `json:"groups,omitempty"`
	ExpiresAt     *time.Time    `json:"expires_at,omitempty"`
	CSRFToken     string        `json:"csrf_token,omitempty"`
	Methods       []LoginMethod `json:"methods"`
}

func (s *Server) loginMethods() []LoginMethod {
	out := []LoginMethod{{Name: "password", Label: "Local user"}}
	if s.OIDC != nil {
		for _, p := range s.OIDC.All() {
			out = append(out, LoginMethod{Name: "oidc:" + p.Config.Name, Label: "Sign in with " + p.Config.Name,
				URL: "/api/v1/auth/oidc/web/start?provider=" + url.QueryEscape(p.Config.Name)})
		}
	}
	return append(out, s.LoginMethods...)
}

// getWebSession tells the UI whether its cookie signs it in, and if so as whom, with the CSRF
// token; otherwise how it may sign in. It never answers 401: not being signed in is an answer.
func (s *Server) getWebSession(w http.ResponseWriter, r *http.Request) error {
	out := webSession{Methods: s.loginMethods()}
	c, err := r.Cookie(SessionCookie)
	if err == nil && c.Value != "" {
		if id, err := s.Auth.VerifyTokenContext(r.Context(), c.Value); err == nil {
			exp := id.ExpiresAt.UTC()
			out = webSession{Authenticated: true, User: id.User, Role: id.Role, Groups: id.Groups,
				ExpiresAt: &exp, CSRFToken: csrfToken(c.Value), Methods: out.Methods}
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// createWebSession signs in with a local user's password and sets the session cookie. Like
// every state-changing call of the UI it needs the CSRF header, here with any value: a form on
// another site cannot set a header, and a script there cannot without a CORS preflight, which
// the gateway never grants. That stops another site from signing a browser in as its own user.
func (s *Server) createWebSession(w http.ResponseWriter, r *http.Request) error {
	if r.Header.Get(CSRFHeader) == "" {
		return errorf(http.StatusForbidden, "csrf", "missing %s header", CSRFHeader)
	}
	var req loginRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return errorf(http.StatusBadRequest, "bad_request", "username and password are required")
	}
	id, err := s.Auth.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		s.log().Warn("web login failed", "user", req.Username, "remote", r.RemoteAddr, "err", err)
		s.authFailure()
		s.audit(r, audit.Entry{Action: audit.ActionLogin, Actor: req.Username, Outcome: audit.Denied,
			Detail: map[string]string{"method": "password", "via": "web", "reason": auth.Reason(err)}})
		return errorf(http.StatusUnauthorized, "unauthorized", "%s", auth.ErrBadCredentials.Error())
	}
	return s.StartWebSession(w, r, id, map[string]string{"method": "password", "via": "web"})
}

// StartWebSession issues a gateway token for id (already authenticated), audits the login with
// detail as every login is (the token's id, role and groups added), sets the token as the
// session cookie and answers like GET /api/v1/auth/session.
func (s *Server) StartWebSession(w http.ResponseWriter, r *http.Request, id *auth.Identity, detail map[string]string) error {
	token, exp, err := s.Auth.IssueToken(id)
	if err != nil {
		return fmt.Errorf("issue token for %s: %w", id.User, err)
	}
	if err := s.auditIssue(r, id, token, exp, detail); err != nil {
		return err
	}
	s.setSessionCookie(w, r, token, exp)
	s.log().Info("web login", "user", id.User, "role", id.Role, "remote", r.RemoteAddr)
	e := exp.UTC()
	return writeJSON(w, http.StatusOK, webSession{Authenticated: true, User: id.User, Role: id.Role, Groups: id.Groups,
		ExpiresAt: &e, CSRFToken: csrfToken(token), Methods: s.loginMethods()})
}

// setSessionCookie sets the web UI's session cookie: HttpOnly, SameSite=Strict, Secure over TLS.
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, exp time.Time) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: token, Path: "/", Expires: exp,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// deleteWebSession signs out: the cookie's token is revoked (audited like a logout) and the
// cookie removed from the browser.
func (s *Server) deleteWebSession(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" && r.Header.Get("Authorization") == "" {
		if err := s.audit(r, audit.Entry{Action: audit.ActionTokenRevoke, Actor: id.User, Outcome: audit.OK, Subject: id.User,
			Detail: logoutDetail(id, map[string]string{"via": "web"})}); err != nil {
			return err
		}
		if _, err := s.Auth.RevokeToken(r.Context(), c.Value); err != nil {
			return fmt.Errorf("sign out %s: %w", id.User, err)
		}
		if err := s.endRefresh(r, id); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
