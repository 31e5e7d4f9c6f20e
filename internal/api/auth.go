package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/oidc"
)

// publicReason is what a client is told about a refused credential: not why (the audit log and
// the gateway log say that), except for what the holder can act on.
func publicReason(err error) string {
	switch auth.Reason(err) {
	case auth.ReasonExpired:
		return "token expired: log in again (or airlock login --refresh)"
	case auth.ReasonRevoked:
		return "credentials revoked: log in again"
	case auth.ReasonNotRefreshable:
		return "this token cannot be refreshed: log in again"
	}
	return auth.ErrBadCredentials.Error()
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expires_at"`
	User        string    `json:"user"`
	Role        auth.Role `json:"role"`
	Groups      []string  `json:"groups"`
	Provider    string    `json:"provider,omitempty"`
	Refreshable bool      `json:"refreshable"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return errorf(http.StatusBadRequest, "bad_request", "username and password are required")
	}
	id, err := s.Auth.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		s.log().Warn("api login failed", "user", req.Username, "remote", r.RemoteAddr, "err", err)
		s.authFailure()
		// Refused either way; an audit failure is logged by s.audit.
		s.audit(r, audit.Entry{Action: audit.ActionLogin, Actor: req.Username, Outcome: audit.Denied,
			Detail: map[string]string{"method": "password", "via": "api", "reason": auth.Reason(err)}})
		return errorf(http.StatusUnauthorized, "unauthorized", "%s", auth.ErrBadCredentials.Error())
	}
	return s.issue(w, r, id, time.Time{}, map[string]string{"method": "password", "via": "api"})
}

// issue issues a gateway token for id (valid until notAfter at most, when set), audits the
// login with detail, and answers with the token.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, id *auth.Identity, notAfter time.Time, detail map[string]string) error {
	token, exp, err := s.Auth.IssueTokenUntil(id, notAfter)
	if err != nil {
		return fmt.Errorf("issue token for %s: %w", id.User, err)
	}
	if err := s.auditIssue(r, id, token, exp, detail); err != nil {
		return err
	}
	s.log().Info("api login", "user", id.User, "role", id.Role, "method", detail["method"], "remote", r.RemoteAddr)
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, loginResponse{Token: token, ExpiresAt: exp.UTC(), User: id.User, Role: id.Role,
		Groups: groups, Provider: id.Provider, Refreshable: id.Session != ""})
}

// auditIssue audits a login that issued token (expiring at exp) to id, with detail plus the
// role, the groups and the token's id: the entry is the token's issue, which its revocation
// (logout) and its refresh name by that id.
func (s *Server) auditIssue(r *http.Request, id *auth.Identity, token string, exp time.Time, detail map[string]string) error {
	c, _ := s.Auth.VerifyToken(token)
	detail["role"] = string(id.Role)
	detail["expires_at"] = exp.UTC().Format(time.RFC3339)
	if c != nil {
		detail["token_id"] = c.TokenID
	}
	if len(id.Groups) > 0 {
		detail["groups"] = strings.Join(id.Groups, ",")
	}
	return s.audit(r, audit.Entry{Action: audit.ActionLogin, Actor: id.User, Outcome: audit.OK, Detail: detail})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"user": id.User, "role": id.Role, "groups": groups,
		"method": id.Method, "expires_at": id.ExpiresAt.UTC(), "via": id.Via, "provider": id.Provider,
		"scope": id.Scope, "service_account": id.Service})
}

// bearer returns the raw bearer credential of r, or "".
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// logout revokes the caller's own gateway token: the bearer token, or the web UI's cookie when
// the request was signed in by it (authenticate's order).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if id.Method != "token" {
		return errorf(http.StatusBadRequest, "bad_request", "only a gateway token can be logged out (an API key is revoked with airlock serviceaccounts revoke)")
	}
	token := bearer(r)
	if c, err := r.Cookie(SessionCookie); token == "" && err == nil {
		token = c.Value
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionTokenRevoke, Actor: id.User, Outcome: audit.OK, Subject: id.User,
		Detail: logoutDetail(id, nil)}); err != nil {
		return err
	}
	if _, err := s.Auth.RevokeToken(r.Context(), token); err != nil {
		return fmt.Errorf("logout %s: %w", id.User, err)
	}
	if err := s.endRefresh(r, id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": true})
}

// logoutDetail is the detail of a logout's token.revoke entry, with extra: the token's id and,
// for an OIDC login, that its refresh ends too.
func logoutDetail(id *auth.Identity, extra map[string]string) map[string]string {
	d := map[string]string{"scope": "token", "token_id": id.TokenID}
	if id.Session != "" {
		d["refresh"] = "ended"
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// endRefresh ends the OIDC login a logged-out token came from, so that no token of it (one
// issued before a refresh, say) can be refreshed any more.
func (s *Server) endRefresh(r *http.Request, id *auth.Identity) error {
	if id.Session == "" {
		return nil
	}
	if err := s.Auth.EndIdPSession(r.Context(), id.Session); err != nil {
		return fmt.Errorf("logout %s: end the IdP session: %w", id.User, err)
	}
	return nil
}

type revokeRequest struct {
	User string `json:"user"`
}

// revoke refuses, at once, every token issued so far to a user (and their refresh).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	var req revokeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.User == "" {
		return errorf(http.StatusBadRequest, "bad_request", "user is required")
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionTokenRevoke, Actor: id.User, Outcome: audit.OK, Subject: req.User,
		Detail: map[string]string{"scope": "user"}}); err != nil {
		return err
	}
	at, err := s.Auth.RevokeUser(r.Context(), req.User)
	if err != nil {
		s.audit(r, audit.Entry{Action: audit.ActionTokenRevoke, Actor: id.User, Outcome: audit.Failed, Subject: req.User,
			Detail: map[string]string{"scope": "user", "error": err.Error()}})
		return err
	}
	s.log().Info("tokens revoked", "user", req.User, "by", id.User)
	return writeJSON(w, http.StatusOK, map[string]any{"user": req.User, "revoked_at": at.UTC()})
}

// refreshFailure audits a refused refresh and answers 401.
func (s *Server) refreshFailure(r *http.Request, actor string, err error, detail map[string]string) error {
	var f *auth.Failure
	if !errors.As(err, &f) {
		return err
	}
	s.authFailure()
	d := map[string]string{"reason": f.Reason}
	for k, v := range detail {
		d[k] = v
	}
	s.audit(r, audit.Entry{Action: audit.ActionTokenRefresh, Actor: actor, Outcome: audit.Denied, Detail: d})
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: publicReason(err), Err: err}
}

// refresh renews an OIDC login's gateway token: the gateway redeems the IdP refresh token it
// kept, so that group changes and disabled users take effect now.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Token string `json:"token"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			return err
		}
	}
	if req.Token == "" {
		req.Token = bearer(r)
	}
	if req.Token == "" {
		return errorf(http.StatusBadRequest, "bad_request", "the token to refresh is required (body {\"token\":...} or Authorization: Bearer)")
	}
	ctx := r.Context()
	old, err := s.Auth.VerifyForRefresh(ctx, req.Token)
	if err != nil {
		return s.refreshFailure(r, s.Auth.TokenSubject(req.Token), err, nil)
	}
	detail := map[string]string{"previous_token_id": old.TokenID, "provider": old.Provider}
	sess, err := s.Auth.GetIdPSession(ctx, old.Session)
	if err != nil {
		return s.refreshFailure(r, old.User, err, detail)
	}
	p, ok := s.OIDC.Get(sess.Provider)
	if !ok {
		return s.refreshFailure(r, old.User, &auth.Failure{Reason: auth.ReasonWrongIssuer, Detail: "provider " + sess.Provider + " is no longer configured"}, detail)
	}
	toks, err := p.Refresh(ctx, sess.RefreshToken)
	if err != nil {
		return s.refreshFailure(r, old.User, err, detail)
	}
	var claims map[string]any
	if toks.IDToken != "" {
		c, err := p.Verify(ctx, toks.IDToken, "")
		if err != nil {
			return s.refreshFailure(r, old.User, err, detail)
		}
		claims = c.Raw
	} else if claims, err = p.UserInfo(ctx, toks.AccessToken); err != nil {
		return s.refreshFailure(r, old.User, err, detail)
	}
	id, err := p.Identity(claims)
	if err != nil {
		return s.refreshFailure(r, old.User, err, detail)
	}
	if id.User != old.User {
		return s.refreshFailure(r, old.User, &auth.Failure{Reason: auth.ReasonWrongUser, Detail: "the IdP now names the user " + id.User}, detail)
	}
	id.Session = old.Session
	sess.RefreshToken = toks.RefreshToken
	sess.RefreshedAt = time.Now().UTC()
	if err := s.Auth.PutIdPSession(ctx, old.Session, sess); err != nil {
		return err
	}
	token, exp, err := s.Auth.IssueTokenUntil(id, time.Now().Add(p.Config.TokenTTL))
	if err != nil {
		return err
	}
	c, _ := s.Auth.VerifyToken(token)
	detail["role"] = string(id.Role)
	detail["groups"] = strings.Join(id.Groups, ",")
	detail["expires_at"] = exp.UTC().Format(time.RFC3339)
	if c != nil {
		detail["token_id"] = c.TokenID
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionTokenRefresh, Actor: id.User, Outcome: audit.OK, Detail: detail}); err != nil {
		return err
	}
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, loginResponse{Token: token, ExpiresAt: exp.UTC(), User: id.User, Role: id.Role,
		Groups: groups, Provider: id.Provider, Refreshable: true})
}

// providers lists the OIDC providers a client may log in with.
func (s *Server) providers(w http.ResponseWriter, r *http.Request) error {
	out := []map[string]any{}
	for _, p := range s.OIDC.All() {
		out = append(out, map[string]any{"name": p.Config.Name, "issuer": p.Config.Issuer})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}

// provider returns the provider a request names (or the only one).
func (s *Server) provider(name string) (*oidc.Provider, error) {
	p, ok := s.OIDC.Get(name)
	if !ok {
		if name == "" {
			return nil, errorf(http.StatusBadRequest, "bad_request", "name the OIDC provider (%d configured)", len(s.OIDC.All()))
		}
		return nil, errorf(http.StatusNotFound, "not_found", "no OIDC provider %q", name)
	}
	return p, nil
}

// oidcFailure audits a refused OIDC login and answers 401; other errors (the provider cannot be
// reached) are a 502.
func (s *Server) oidcFailure(r *http.Request, p *oidc.Provider, method string, err error) error {
	return s.oidcFailureVia(r, p, method, "api", err)
}

// oidcFailureVia is oidcFailure for a login through via (api, web).
func (s *Server) oidcFailureVia(r *http.Request, p *oidc.Provider, method, via string, err error) error {
	var f *auth.Failure
	name := ""
	if p != nil {
		name = p.Config.Name
	}
	if !errors.As(err, &f) {
		return &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "the identity provider could not be reached (see the gateway log)", Err: err}
	}
	s.log().Warn("oidc login refused", "provider", name, "method", method, "reason", f.Reason, "err", err)
	s.authFailure()
	s.audit(r, audit.Entry{Action: audit.ActionLogin, Outcome: audit.Denied,
		Detail: map[string]string{"method": method, "via": via, "provider": name, "reason": f.Reason}})
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: publicReason(err), Err: err}
}

// exchangeToken trades an IdP token (airlock login --token) for a gateway token. It cannot be
// refreshed, and it ends when the IdP token does.
func (s *Server) exchangeToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Provider string `json:"provider"`
		Token    string `json:"token"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return errorf(http.StatusBadRequest, "bad_request", "token is required")
	}
	var p *oidc.Provider
	if req.Provider != "" {
		var err error
		if p, err = s.provider(req.Provider); err != nil {
			return err
		}
	} else if p2, ok := s.OIDC.ByIssuer(oidc.Issuer(req.Token)); ok {
		p = p2
	} else {
		return s.oidcFailure(r, nil, "oidc_token", &auth.Failure{Reason: auth.ReasonWrongIssuer,
			Detail: fmt.Sprintf("no provider has the issuer %q", oidc.Issuer(req.Token))})
	}
	c, err := p.Verify(r.Context(), req.Token, "")
	if err != nil {
		return s.oidcFailure(r, p, "oidc_token", err)
	}
	id, err := p.Identity(c.Raw)
	if err != nil {
		return s.oidcFailure(r, p, "oidc_token", err)
	}
	if err := s.Auth.CheckUserRevoked(r.Context(), id.User, c.IssuedAt()); err != nil {
		return s.oidcFailure(r, p, "oidc_token", err)
	}
	notAfter := time.Now().Add(p.Config.TokenTTL)
	if c.Expiry.Before(notAfter) {
		notAfter = c.Expiry
	}
	return s.issue(w, r, id, notAfter, map[string]string{"method": "oidc_token", "via": "api", "provider": p.Config.Name})
}

// loopback reports whether u is an http URL on a loopback address: the only redirect the CLI
// can receive, and the only one the gateway asks the provider for.
func loopback(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// oidcAuthorize returns the provider's authorization URL for a login that the CLI drives: it
// keeps the PKCE verifier and the state, and receives the code on its loopback redirect.
func (s *Server) oidcAuthorize(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Provider      string `json:"provider"`
		RedirectURI   string `json:"redirect_uri"`
		State         string `json:"state"`
		CodeChallenge string `json:"code_challenge"`
		Nonce         string `json:"nonce"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if !loopback(req.RedirectURI) || len(req.State) < 16 || len(req.CodeChallenge) < 43 || len(req.Nonce) < 16 {
		return errorf(http.StatusBadRequest, "bad_request", "want a loopback http redirect_uri, a state and a nonce of 16+ characters, and an S256 code_challenge")
	}
	p, err := s.provider(req.Provider)
	if err != nil {
		return err
	}
	u, err := p.AuthCodeURL(r.Context(), req.RedirectURI, req.State, req.CodeChallenge, req.Nonce)
	if err != nil {
		return &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "the identity provider could not be reached (see the gateway log)", Err: err}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"url": u, "provider": p.Config.Name})
}

// oidcExchange redeems the code of an authorization-code login and issues a gateway token,
// refreshable while the provider's session lives.
func (s *Server) oidcExchange(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Provider     string `json:"provider"`
		Code         string `json:"code"`
		CodeVerifier string `json:"code_verifier"`
		RedirectURI  string `json:"redirect_uri"`
		Nonce        string `json:"nonce"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Code == "" || req.CodeVerifier == "" || !loopback(req.RedirectURI) || req.Nonce == "" {
		return errorf(http.StatusBadRequest, "bad_request", "code, code_verifier, nonce and a loopback redirect_uri are required")
	}
	p, err := s.provider(req.Provider)
	if err != nil {
		return err
	}
	toks, err := p.Exchange(r.Context(), req.Code, req.CodeVerifier, req.RedirectURI)
	if err != nil {
		return s.oidcFailure(r, p, "oidc", err)
	}
	return s.finishOIDC(w, r, p, toks, req.Nonce, "oidc")
}

// finishOIDC validates the ID token of a grant, keeps the refresh token, and issues.
func (s *Server) finishOIDC(w http.ResponseWriter, r *http.Request, p *oidc.Provider, toks oidc.Tokens, nonce, method string) error {
	id, err := s.oidcIdentity(r, p, toks, nonce)
	if err != nil {
		return s.oidcFailure(r, p, method, err)
	}
	return s.issue(w, r, id, time.Now().Add(p.Config.TokenTTL), map[string]string{"method": method, "via": "api", "provider": p.Config.Name})
}

// oidcIdentity validates the ID token of a grant (signature, issuer, audience, times, nonce),
// maps its claims to an identity, and keeps the refresh token as the identity's IdP session.
func (s *Server) oidcIdentity(r *http.Request, p *oidc.Provider, toks oidc.Tokens, nonce string) (*auth.Identity, error) {
	if toks.IDToken == "" {
		return nil, &auth.Failure{Reason: auth.ReasonMalformed, Detail: "the provider returned no ID token (is openid among the scopes?)"}
	}
	c, err := p.Verify(r.Context(), toks.IDToken, nonce)
	if err != nil {
		return nil, err
	}
	id, err := p.Identity(c.Raw)
	if err != nil {
		return nil, err
	}
	if toks.RefreshToken != "" {
		id.Session = auth.NewSessionID()
		if err := s.Auth.PutIdPSession(r.Context(), id.Session, auth.IdPSession{Provider: p.Config.Name, User: id.User,
			RefreshToken: toks.RefreshToken, CreatedAt: time.Now().UTC()}); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// oidcDevice starts a device-flow login: the CLI shows the user code and the verification URL,
// then waits with oidcDeviceWait.
func (s *Server) oidcDevice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Provider string `json:"provider"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	p, err := s.provider(req.Provider)
	if err != nil {
		return err
	}
	da, err := p.DeviceAuth(r.Context())
	if err != nil {
		return &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "the identity provider refused to start a device login (see the gateway log)", Err: err}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"provider": p.Config.Name, "device_code": da.DeviceCode,
		"user_code": da.UserCode, "verification_uri": da.VerificationURI, "verification_uri_complete": da.VerificationURIComplete,
		"expires_at": da.Expiry.UTC(), "interval": da.Interval})
}

// oidcDeviceWait waits, polling the provider, until the user approved the device login (then it
// issues a gateway token), denied it, or it expired.
func (s *Server) oidcDeviceWait(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Provider   string    `json:"provider"`
		DeviceCode string    `json:"device_code"`
		Interval   int64     `json:"interval"`
		ExpiresAt  time.Time `json:"expires_at"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.DeviceCode == "" {
		return errorf(http.StatusBadRequest, "bad_request", "device_code is required")
	}
	p, err := s.provider(req.Provider)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Minute)
	if !req.ExpiresAt.IsZero() && req.ExpiresAt.Before(deadline) {
		deadline = req.ExpiresAt
	}
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	toks, err := p.DeviceWait(ctx, &oauth2.DeviceAuthResponse{DeviceCode: req.DeviceCode, Interval: max(req.Interval, 1), Expiry: deadline})
	if err != nil {
		return s.oidcFailure(r, p, "oidc_device", err)
	}
	return s.finishOIDC(w, r, p, toks, "", "oidc_device")
}
