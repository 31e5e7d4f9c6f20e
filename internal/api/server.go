package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, authed bool, h handlerFunc) {
		mux.Handle(pattern, s.serve(pattern, authed, h))
	}
	handle("GET /healthz", false, s.healthz)
	handle("GET /metrics", false, s.metrics)
	handle("GET /api/v1/openapi.json", false, s.openapi)
	handle("POST /api/v1/auth/login", false, s.login)
	handle("GET /api/v1/whoami", true, s.whoami)
	handle("GET /api/v1/sessions", true, s.listSessions)
	handle("GET /api/v1/sessions/{id}", true, s.getSession)
	handle("GET /api/v1/sessions/{id}/events", true, s.sessionEvents)
	handle("GET /api/v1/sessions/{id}/verify", true, s.verifySession)
	handle("GET /api/v1/sessions/{id}/export", true, s.exportSession)
	// The one POST on the sessions tree; more specific than the catch-all below, which answers
	// 405 to every other attempt to change a recording.
	handle("POST /api/v1/sessions/{id}/hold", true, s.holdSession)
	handle("GET /api/v1/signing-keys", false, s.signingKeys)
	handle("GET /api/v1/targets", true, s.listTargets)
	handle("GET /api/v1/targets/{name}", true, s.getTarget)
	handle("POST /api/v1/targets", true, s.createTarget)
	handle("GET /api/v1/requests", true, s.listRequests)
	handle("POST /api/v1/requests/{id}/approve", true, s.approveRequest)
	handle("POST /api/v1/requests/{id}/deny", true, s.denyRequest)
	handle("GET /api/v1/policies", true, s.listPolicies)
	handle("PUT /api/v1/policies", true, s.putPolicies)
	handle("GET /api/v1/policies/explain", true, s.explainPolicy)
	// Recordings are immutable whoever asks, so these answer before authentication.
	handle("/api/v1/sessions", false, s.sessionsOther)
	handle("/api/v1/sessions/", false, s.sessionsOther)
	handle("/api/v1/", false, func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "not_found", "no API route %s %s", r.Method, r.URL.Path)
	})
	return mux
}

// serve adapts h: authentication, the one place errors are written, the request log line and
// the request counter.
func (s *Server) serve(route string, authed bool, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		err := func() error {
			if authed {
				id, err := s.authenticate(r)
				if err != nil {
					return err
				}
				r = r.WithContext(auth.WithIdentity(r.Context(), id))
			}
			return h(sw, r)
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
		s.log().Debug("api request", "method", r.Method, "path", r.URL.Path, "route", route,
			"status", sw.status, "user", user, "remote", r.RemoteAddr, "duration", time.Since(start))
		if s.Metrics != nil {
			s.Metrics.APIRequests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
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
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "missing bearer token (Authorization: Bearer <token>)")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "Authorization header must be 'Bearer <token>'")
	}
	id, err := s.Auth.VerifyToken(strings.TrimSpace(token))
	if err != nil {
		s.authFailure()
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: err.Error()}
	}
	return id, nil
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

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      string    `json:"user"`
	Role      auth.Role `json:"role"`
	Groups    []string  `json:"groups"`
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
			Detail: map[string]string{"method": "password", "via": "api"}})
		return errorf(http.StatusUnauthorized, "unauthorized", "%s", auth.ErrBadCredentials.Error())
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionLogin, Actor: id.User, Outcome: audit.OK,
		Detail: map[string]string{"method": "password", "via": "api", "role": string(id.Role)}}); err != nil {
		return err
	}
	token, exp, err := s.Auth.IssueToken(id)
	if err != nil {
		return fmt.Errorf("issue token for %s: %w", id.User, err)
	}
	s.log().Info("api login", "user", id.User, "role", id.Role, "remote", r.RemoteAddr)
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, loginResponse{Token: token, ExpiresAt: exp.UTC(), User: id.User, Role: id.Role, Groups: groups})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"user": id.User, "role": id.Role, "groups": groups,
		"method": id.Method, "expires_at": id.ExpiresAt.UTC()})
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
