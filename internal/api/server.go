package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/oidc"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Server is the REST API. The gateway fills the fields and serves Handler.
type Server struct {
	Store   store.Store
	Auth    *auth.Service
	Targets *target.Catalog
	Policy  *policy.Engine
	Metrics *metrics.Metrics // may be nil: nothing is counted and /metrics answers 404
	Log     *slog.Logger     // discards when nil
	Ready   func() bool      // healthz answers 200 only when it returns true; always ready when nil
	// Listeners returns the protocol listeners' bound addresses by protocol; TLSCertificate is
	// the PEM certificate chain they present. GET /api/v1/listeners reports both.
	Listeners      func() map[string]string
	TLSCertificate []byte
	// SigningKeys are the public keys of recording checkpoints; with none, every recording
	// verifies with unknown_key findings.
	SigningKeys SigningKeys
	// Audit records logins, target changes, reads of a recording by someone other than its
	// owner and refused attempts to change one (the gateway sets an *audit.Log). nil: nothing
	// is audited.
	Audit Auditor
	// Sealer opens the originals of masked rows (rows.original events) for ?reveal=true. nil:
	// they cannot be revealed.
	Sealer Opener
	// Approvals holds the statements guardrails send for approval. nil: none are pending and
	// every decision is 404.
	Approvals *approval.Broker
	// ConfigPolicies are the config file's policies, fixed; Policy evaluates them first, then
	// the ones managed through the API (stored under PolicyKey).
	ConfigPolicies []config.Policy
	// OIDC are the configured OpenID Connect providers. nil: none (OIDC logins answer 404).
	OIDC *oidc.Set
	// Terminator ends sessions in progress (POST /api/v1/sessions/{id}/terminate); the
	// gateway's recorder. nil: none can be ended (409).
	Terminator Terminator
	// Connector reaches targets for POST /api/v1/targets/{name}/test. nil: the test answers 501.
	Connector Dialer
	// Agents registers network-resident agents and shows their tunnels (/api/v1/agents).
	// nil: the gateway has no agent listener (listen.agents); the list is empty.
	Agents Agents
	// UI serves the web UI at every path the API does not take (internal/ui). nil: none.
	UI http.Handler
	// LoginMethods are offered on the web UI's sign-in page beside the local password (see
	// LoginMethod).
	LoginMethods []LoginMethod
	// SSHCA issues SSH user certificates (POST /api/v1/ssh/certificate). nil: the gateway has
	// no SSH listener, and the route answers 501.
	SSHCA SSHSigner

	policyMu sync.Mutex // serialises changes of the API-managed policies
}

// Opener is what the API needs of the recording key (sealbox.Keyring).
type Opener interface {
	Open(keyID string, nonce, ct, aad []byte) ([]byte, error)
}

// Auditor is what the API needs of the audit log.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry) error
}

// audit records e, durably, before the caller answers. An error is the request's answer when the
// action must not happen unaudited; where the action is already refused the caller ignores it
// (it is logged here).
func (s *Server) audit(r *http.Request, e audit.Entry) error {
	if s.Audit == nil {
		return nil
	}
	if e.Client == "" {
		e.Client = r.RemoteAddr
	}
	if err := s.Audit.Record(context.WithoutCancel(r.Context()), e); err != nil {
		s.log().Error("api: the audit log cannot be written", "action", e.Action, "actor", e.Actor, "subject", e.Subject, "err", err)
		s.Metrics.Error("audit")
		return &Error{Status: http.StatusServiceUnavailable, Code: "audit_unavailable",
			Message: "the audit log cannot be written, so the request was refused", Err: err}
	}
	return nil
}

// Error is an error with the status and machine-readable code an API client sees. Handlers
// return it for everything the caller did wrong; any other error is a 500 whose details stay
// in the log.
type Error struct {
	Status  int
	Code    string // stable machine code: bad_request, unauthorized, forbidden, not_found, ...
	Message string // human message, shown to the caller
	Err     error  // cause, logged, not shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// handlerFunc is a handler that returns its error, to be written by serve in one place.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// route is one API route and who may call it.
type route struct {
	Pattern string
	// Role is the least role that may call the route; "" means public (no authentication).
	// Handlers may refuse more finely (a user reads only her own sessions).
	Role auth.Role
	// DenyAction, when set, is the audit action recorded when an authenticated caller lacks
	// Role (its subject is the route's {id} or {name}).
	DenyAction string
	h          handlerFunc
}

// routes is every route of the API: the one table that says who may call what (docs/identity.md
// has it as a matrix, and TestRoleMatrix checks it).
func (s *Server) routes() []route {
	const (
		public  = auth.Role("")
		user    = auth.RoleUser
		auditor = auth.RoleAuditor
		admin   = auth.RoleAdmin
	)
	return []route{
		{"GET /healthz", public, "", s.healthz},
		{"GET /metrics", public, "", s.metrics},
		{"GET /api/v1/openapi.json", public, "", s.openapi},
		{"GET /api/v1/signing-keys", public, "", s.signingKeys},
		{"POST /api/v1/auth/login", public, "", s.login},
		// Refresh authenticates with the (possibly expired) token in its body.
		{"POST /api/v1/auth/refresh", public, "", s.refresh},
		{"POST /api/v1/auth/logout", user, "", s.logout},
		{"POST /api/v1/auth/revoke", admin, audit.ActionTokenRevoke, s.revoke},
		{"GET /api/v1/auth/providers", public, "", s.providers},
		{"POST /api/v1/auth/token", public, "", s.exchangeToken},
		{"POST /api/v1/auth/oidc/authorize", public, "", s.oidcAuthorize},
		{"POST /api/v1/auth/oidc/exchange", public, "", s.oidcExchange},
		{"POST /api/v1/auth/oidc/device", public, "", s.oidcDevice},
		{"POST /api/v1/auth/oidc/device/wait", public, "", s.oidcDeviceWait},
		{"GET /api/v1/auth/oidc/web/start", public, "", s.oidcWebStart},
		{"GET /api/v1/auth/oidc/callback", public, "", s.oidcWebCallback},
		{"GET /api/v1/whoami", user, "", s.whoami},
		{"GET /api/v1/listeners", user, "", s.listeners},
		{"POST /api/v1/ssh/certificate", user, "", s.sshCertificate},
		// The web UI's sign-in by cookie (websession.go).
		{"GET /api/v1/auth/session", public, "", s.getWebSession},
		{"POST /api/v1/auth/session", public, "", s.createWebSession},
		{"DELETE /api/v1/auth/session", user, "", s.deleteWebSession},
		{"GET /api/v1/users", admin, "", s.listUsers},
		{"GET /api/v1/service-accounts", admin, "", s.listServiceAccounts},
		{"POST /api/v1/service-accounts", admin, audit.ActionServiceAccountCreate, s.createServiceAccount},
		{"POST /api/v1/service-accounts/{name}/revoke", admin, audit.ActionServiceAccountRevoke, s.revokeServiceAccount},
		{"GET /api/v1/agents", admin, "", s.listAgents},
		{"POST /api/v1/agents", admin, audit.ActionAgentCreate, s.createAgent},
		{"POST /api/v1/agents/{name}/revoke", admin, audit.ActionAgentRevoke, s.revokeAgent},
		{"GET /api/v1/sessions", user, "", s.listSessions},
		{"GET /api/v1/sessions/{id}", user, "", s.getSession},
		{"GET /api/v1/sessions/{id}/events", user, "", s.sessionEvents},
		{"GET /api/v1/sessions/{id}/verify", user, "", s.verifySession},
		{"GET /api/v1/sessions/{id}/export", user, "", s.exportSession},
		// The one POST on the sessions tree; more specific than the catch-all below, which
		// answers 405 to every other attempt to change a recording.
		{"POST /api/v1/sessions/{id}/hold", admin, audit.ActionRecordingHold, s.holdSession},
		// The web UI's live view and its end (webroutes.go).
		{"GET /api/v1/sessions/{id}/live", user, "", s.liveSession},
		{"POST /api/v1/sessions/{id}/terminate", admin, audit.ActionSessionTerminate, s.terminateSession},
		{"GET /api/v1/targets", user, "", s.listTargets},
		{"GET /api/v1/targets/{name}", user, "", s.getTarget},
		{"POST /api/v1/targets", admin, audit.ActionTargetPut, s.createTarget},
		{"POST /api/v1/targets/{name}/test", admin, "", s.testTarget},
		{"GET /api/v1/requests", auditor, "", s.listRequests},
		{"POST /api/v1/requests/{id}/approve", admin, approval.ActionDecide, s.approveRequest},
		{"POST /api/v1/requests/{id}/deny", admin, approval.ActionDecide, s.denyRequest},
		{"GET /api/v1/policies", auditor, "", s.listPolicies},
		{"PUT /api/v1/policies", admin, actionPolicyPut, s.putPolicies},
		{"GET /api/v1/policies/explain", auditor, "", s.explainPolicy},
		// Recordings are immutable whoever asks, so these answer before authentication.
		{"/api/v1/sessions", public, "", s.sessionsOther},
		{"/api/v1/sessions/", public, "", s.sessionsOther},
		{"/api/v1/", public, "", func(w http.ResponseWriter, r *http.Request) error {
			return errorf(http.StatusNotFound, "not_found", "no API route %s %s", r.Method, r.URL.Path)
		}},
	}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.Pattern, s.serve(rt))
	}
	if s.UI != nil {
		mux.Handle("/", s.UI) // every path no API route takes
	}
	modify := s.serve(route{Pattern: "/api/v1/sessions/", h: s.sessionsOther})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The mux answers a path that is not clean (/api/v1/sessions/x/../ID, a doubled slash)
		// with a redirect to the clean one, before any route: an attempt to change a recording
		// by such a path is refused and audited here, as by the clean path, whether or not its
		// client would follow the redirect.
		if clean := path.Clean(r.URL.Path); clean != strings.TrimSuffix(r.URL.Path, "/") &&
			(clean == "/api/v1/sessions" || strings.HasPrefix(clean, "/api/v1/sessions/")) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodConnect:
			default:
				modify.ServeHTTP(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// serve adapts a route: authentication and its role, the one place errors are written, the
// request log line and the request counter.
func (s *Server) serve(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		err := func() error {
			if rt.Role != "" {
				id, err := s.authenticate(r)
				if err != nil {
					return err
				}
				r = r.WithContext(auth.WithIdentity(r.Context(), id))
				if id.Role.Rank() < rt.Role.Rank() {
					if rt.DenyAction != "" {
						subject := r.PathValue("id")
						if subject == "" {
							subject = r.PathValue("name")
						}
						s.audit(r, audit.Entry{Action: rt.DenyAction, Actor: id.User, Outcome: audit.Denied, Subject: subject,
							Detail: map[string]string{"role": string(id.Role), "route": rt.Pattern}})
					}
					return errorf(http.StatusForbidden, "forbidden", "%s needs the role %s (you are %s with role %s)", rt.Pattern, rt.Role, id.User, id.Role)
				}
			}
			return rt.h(sw, r)
		}()
		if err != nil {
			s.writeError(sw, r, err)
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		user := ""
		if id := auth.FromContext(r.Context()); id != nil {
			user = id.User
		}
		s.log().Debug("api request", "method", r.Method, "path", r.URL.Path, "route", rt.Pattern,
			"status", sw.status, "user", user, "remote", r.RemoteAddr, "duration", time.Since(start))
		if s.Metrics != nil {
			s.Metrics.APIRequests.WithLabelValues(rt.Pattern, strconv.Itoa(sw.status)).Inc()
		}
	})
}

func (s *Server) writeError(w *statusWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		s.log().Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		s.Metrics.Error("api")
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error (see the gateway log)"}
	} else if e.Err != nil {
		s.log().Warn("api request refused", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", e)
	}
	if w.status != 0 {
		// The answer has started (a stream); the handler reports errors inside it.
		return
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
	}
	writeJSON(w, e.Status, map[string]string{"error": e.Message, "code": e.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// decodeBody reads a JSON request body of at most 1 MiB into v, refusing unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "invalid JSON body: %v", err)
	}
	return nil
}

func (s *Server) authenticate(r *http.Request) (*auth.Identity, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		if id, ok, err := s.cookieIdentity(r); ok { // the web UI (websession.go)
			return id, err
		}
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "missing bearer token (Authorization: Bearer <token>)")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "Authorization header must be 'Bearer <token>'")
	}
	token = strings.TrimSpace(token)
	var id *auth.Identity
	var err error
	if oidc.LooksLikeJWT(token) && len(s.OIDC.All()) > 0 {
		id, err = s.OIDC.Authenticate(r.Context(), token, s.Auth.CheckUserRevoked)
	} else {
		id, err = s.Auth.VerifySecret(r.Context(), token)
	}
	if err != nil {
		s.authFailure()
		method := "token"
		switch {
		case strings.HasPrefix(token, auth.APIKeyPrefix):
			method = "api_key"
		case oidc.LooksLikeJWT(token):
			method = "oidc_token"
		}
		// Refused either way; an audit failure is logged by s.audit.
		s.audit(r, audit.Entry{Action: audit.ActionLogin, Outcome: audit.Denied,
			Detail: map[string]string{"method": method, "via": "api", "reason": auth.Reason(err)}})
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: publicReason(err), Err: err}
	}
	return id, nil
}

// stillAuthenticated checks again the credential r was authenticated with, for an answer that
// lasts (a live stream): an expired or revoked one is refused (and audited) as authenticate
// refuses it. The error is what the client may be told.
func (s *Server) stillAuthenticated(r *http.Request) error {
	if _, err := s.authenticate(r); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return errors.New(e.Message)
		}
		return errors.New("your credentials could not be checked again")
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if s.Ready != nil && !s.Ready() {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.Metrics == nil || s.Metrics.Registry == nil {
		return errorf(http.StatusNotFound, "not_found", "metrics are disabled")
	}
	promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}

// statusWriter remembers the status written, for the log and the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) authFailure() {
	if s.Metrics != nil {
		s.Metrics.AuthFailures.WithLabelValues("api").Inc()
	}
}
