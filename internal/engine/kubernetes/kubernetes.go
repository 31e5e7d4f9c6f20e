package kubernetes

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// Name is the engine's registry name and the target type it serves.
const Name = "kubernetes"

// PathPrefix starts every request path: /k8s/TARGET/ followed by the API path.
const PathPrefix = "/k8s/"

const (
	handshakeTimeout = 30 * time.Second
	// authCacheTTL bounds how long a connection reuses a credential it already checked, so
	// that a revoked or expired token stops working on a long-lived connection too.
	authCacheTTL = time.Minute
	// maxBuffer is how much of a response body the gateway holds to record it (masked) before
	// forwarding; longer bodies are recorded up to the body limit and then streamed.
	maxBuffer = 32 << 20
)

func init() {
	engine.Register(Name, func(d engine.Deps) (engine.Engine, error) { return New(d), nil })
}

// Engine is the Kubernetes engine.
type Engine struct {
	d         engine.Deps
	bodyLimit int
	// forwardLimit is how many bytes of each direction of a port-forwarded connection are
	// kept (forward.data); 0 keeps none.
	forwardLimit int64
	upstreams    upstreamCache
	maskers      masking.Cache
}

// New returns the engine.
func New(d engine.Deps) *Engine {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	limit := 64 << 10
	if d.Config != nil && d.Config.Kubernetes.BodyLimit != 0 {
		limit = d.Config.Kubernetes.BodyLimit
	}
	if limit < 0 {
		limit = 0
	}
	fwd := int64(16 << 20)
	if d.Config != nil && d.Config.Kubernetes.ForwardLimit != 0 {
		fwd = int64(d.Config.Kubernetes.ForwardLimit)
	}
	e := &Engine{d: d, bodyLimit: limit, forwardLimit: max(fwd, 0)}
	e.upstreams.dial = d.Connector.Dial
	e.upstreams.open = d.Connector.Open
	return e
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return Name }

// Refuse implements engine.Engine: a 503 Status to whatever the client sends first.
func (e *Engine) Refuse(conn net.Conn, reason error) {
	if e.d.TLS == nil {
		return
	}
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	tc := tls.Server(conn, e.httpTLS())
	if err := tc.Handshake(); err != nil {
		return
	}
	// Over HTTP/1.1 a plain answer works; an HTTP/2 client just sees the connection close.
	body, _ := json.Marshal(status(http.StatusServiceUnavailable, "ServiceUnavailable", reason.Error()))
	fmt.Fprintf(tc, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

func (e *Engine) httpTLS() *tls.Config {
	cfg := e.d.TLS.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg
}

// Serve implements engine.Engine: it runs an HTTP server over the one TLS connection until the
// client closes it or the gateway ends the session, then ends the connection's recordings.
func (e *Engine) Serve(ctx context.Context, raw net.Conn) error {
	log := e.d.Log.With("protocol", Name, "client", raw.RemoteAddr().String())
	if e.d.TLS == nil {
		return errors.New("kubernetes: the gateway has no TLS certificate")
	}
	cfg := e.httpTLS()
	tc := tls.Server(&holdConn{Conn: raw}, cfg) // holdConn: bulkio.go
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		log.Debug("TLS handshake failed", "err", err)
		return nil
	}
	raw.SetDeadline(time.Time{})

	c := &clientConn{e: e, ctx: ctx, log: log, addr: raw.RemoteAddr().String(), sessions: map[sessionKey]*session{}, auth: map[[32]byte]cachedID{}}
	ln := newConnListener(tc)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	srv := &http.Server{
		Handler:           c,
		TLSConfig:         cfg,
		Protocols:         &protos,
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       10 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				ln.Close()
			}
		},
	}
	stop := context.AfterFunc(ctx, func() { srv.Close(); ln.Close() })
	defer stop()
	srv.Serve(ln)
	c.handlers.Wait() // hijacked (upgraded) requests outlive the server
	srv.Close()

	reason := "client_disconnected"
	if cause := context.Cause(ctx); cause != nil {
		reason = endReason(cause)
	}
	c.endSessions(reason, context.Cause(ctx))
	return nil
}

func endReason(cause error) string {
	switch {
	case errors.Is(cause, engine.ErrShutdown):
		return "gateway_shutdown"
	case errors.Is(cause, engine.ErrTerminated):
		return "client_terminated"
	default:
		return "error"
	}
}

// clientConn is one client connection: several requests, possibly concurrent (HTTP/2), each
// of which names its target in its path.
type clientConn struct {
	e        *Engine
	ctx      context.Context
	log      *slog.Logger
	addr     string
	handlers sync.WaitGroup

	mu       sync.Mutex
	sessions map[sessionKey]*session
	auth     map[[32]byte]cachedID
	closed   bool
}

type cachedID struct {
	id *auth.Identity
	at time.Time
}

type sessionKey struct{ user, target string }

// session is the recording of one user's requests to one target over one client connection.
type session struct {
	eng      *Engine
	t        target.Target
	id       *auth.Identity
	dec      policy.Decision
	rec      *recorder.Session // nil when a policy turns recording off
	up       *upstream
	token    string          // the gateway's bearer token for the target, "" for none
	masker   *masking.Masker // the policy's masking of terminal output; nil: none
	log      *slog.Logger
	ctx      context.Context // ends at the policy's max_duration, or with the connection
	cancel   context.CancelFunc
	requests atomic.Int64
	nextID   atomic.Uint64
	fromCli  atomic.Int64
	toCli    atomic.Int64
	failed   atomic.Pointer[error]               // set when the recording failed: the session is over
	lost     atomic.Pointer[connector.LostError] // set when a request's agent was lost: the session ends agent_lost
}

// ServeHTTP authenticates a request, finds (or starts) its session and relays it.
func (c *clientConn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handlers.Add(1)
	defer c.handlers.Done()
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	tname, apiPath, _ := strings.Cut(rest, "/")
	if !ok || tname == "" {
		// A client that replaces the kubeconfig's path (`kubectl get --raw PATH` does) still
		// names the target in its token (`airlock kube-credential --target`).
		tname, _, _, _ = credential(r)
		apiPath = strings.TrimPrefix(r.URL.Path, "/")
		if tname == "" {
			writeStatus(w, http.StatusNotFound, "NotFound", "the gateway serves Kubernetes API requests under /k8s/TARGET/: use the kubeconfig from `airlock kubeconfig TARGET`")
			return
		}
	}
	id, err := c.authenticate(r, tname)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", err.Error())
		return
	}
	s, herr := c.session(id, tname, r)
	if herr != nil {
		writeStatus(w, herr.code, herr.reason, herr.msg)
		return
	}
	s.serve(c, w, r, "/"+apiPath)
}

// httpError is an answer the gateway gives itself, as a Kubernetes Status.
type httpError struct {
	code   int
	reason string
	msg    string
}

// credential returns the user name and secret of a request: a bearer token USER:SECRET or
// @TARGET/USER:SECRET (what `airlock kube-credential` hands kubectl, the second with
// --target), or HTTP basic authentication. target is the one the token names, if any.
func credential(r *http.Request) (target, user, secret string, ok bool) {
	if u, p, ok := r.BasicAuth(); ok {
		return "", u, p, true
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "", "", "", false
	}
	tok = strings.TrimSpace(tok)
	if rest, ok := strings.CutPrefix(tok, "@"); ok {
		if t, cred, ok := strings.Cut(rest, "/"); ok && t != "" && !strings.Contains(t, ":") {
			target, tok = t, cred
		}
	}
	user, secret, ok = strings.Cut(tok, ":")
	return target, user, secret, ok
}

func (c *clientConn) authenticate(r *http.Request, tname string) (*auth.Identity, error) {
	_, user, secret, ok := credential(r)
	if !ok || user == "" || secret == "" {
		return nil, errors.New("no gateway credential: use the kubeconfig from `airlock kubeconfig TARGET` (its user runs `airlock kube-credential`)")
	}
	key := sha256.Sum256([]byte(user + "\x00" + secret))
	now := time.Now()
	c.mu.Lock()
	ci, hit := c.auth[key]
	c.mu.Unlock()
	if hit && now.Sub(ci.at) < authCacheTTL && (ci.id.ExpiresAt.IsZero() || now.Before(ci.id.ExpiresAt)) {
		return ci.id, nil
	}
	e := c.e
	id, err := e.d.Auth.Authenticate(r.Context(), user, secret)
	if err != nil {
		e.d.Metrics.AuthFailuresInc(Name)
		c.log.Info("authentication failed", "user", user, "target", tname, "err", err)
		if e.d.Audit != nil {
			if aerr := e.d.Audit.Record(r.Context(), audit.Entry{Action: audit.ActionLogin, Actor: user, Outcome: audit.Denied,
				Client: c.addr, Detail: map[string]string{"protocol": Name, "target": tname, "reason": auth.Reason(err)}}); aerr != nil {
				c.log.Error("audit log: failed login not recorded", "err", aerr)
			}
		}
		return nil, fmt.Errorf("authentication failed for user %q: run `airlock login` again", user)
	}
	c.mu.Lock()
	c.auth[key] = cachedID{id: id, at: now}
	c.mu.Unlock()
	return id, nil
}

// session returns the running session of id on target tname, starting it (policy decision,
// recording) on the first request.
func (c *clientConn) session(id *auth.Identity, tname string, r *http.Request) (*session, *httpError) {
	key := sessionKey{id.User, tname}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sessions[key]; ok {
		if p := s.failed.Load(); p != nil {
			return nil, &httpError{http.StatusServiceUnavailable, "ServiceUnavailable", "the session's recording failed, so the gateway ended it: " + (*p).Error()}
		}
		if s.ctx.Err() != nil {
			return nil, &httpError{http.StatusForbidden, "Forbidden", "the session ended: " + context.Cause(s.ctx).Error()}
		}
		return s, nil
	}
	if c.closed {
		return nil, &httpError{http.StatusServiceUnavailable, "ServiceUnavailable", "the connection is closing"}
	}
	e := c.e
	log := c.log.With("user", id.User, "target", tname)
	t, err := e.d.Targets.Lookup(r.Context(), tname)
	if err != nil || t.Type != Name {
		msg := fmt.Sprintf("target %q does not exist", tname)
		if err == nil {
			msg = fmt.Sprintf("target %q is a %s target, not kubernetes", tname, t.Type)
		} else if !errors.Is(err, target.ErrUnknown) {
			msg = "could not look up target: " + err.Error()
		}
		return nil, &httpError{http.StatusNotFound, "NotFound", msg + " (`airlock targets list` shows them)"}
	}
	dec := e.d.Policy.Decide(id, t)
	if !dec.Allow {
		e.d.Metrics.Error("policy_denied")
		log.Info("access denied", "rule", dec.Rule, "reason", dec.Reason)
		return nil, &httpError{http.StatusForbidden, "Forbidden", "access to target " + t.Name + " denied: " + dec.Reason}
	}
	up, err := e.upstreams.get(t)
	if err != nil {
		e.d.Metrics.Error("dial")
		return nil, &httpError{http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("target %s: %v", t.Name, err)}
	}
	token, err := resolveToken(t)
	if err != nil {
		return nil, &httpError{http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("target %s: %v", t.Name, err)}
	}
	mk, err := e.maskers.Get(dec.Settings.Masking)
	if err != nil {
		return nil, &httpError{http.StatusForbidden, "Forbidden", "the masking rules of policy " + dec.Rule + " do not compile: " + err.Error()}
	}
	start := event.SessionStartData{
		User: id.User, Groups: id.Groups, Role: string(id.Role), AuthMethod: id.Method,
		Target: t.Name, TargetType: t.Type, ClientAddr: c.addr, ApplicationName: r.UserAgent(),
		TLS: true, TLSVersion: tls.VersionName(r.TLS.Version), Upstream: t.Address, UpstreamTLS: strings.HasPrefix(t.Address, "https://"),
		Policy: dec.Rule,
	}
	if t.Agent != "" {
		// The API server's address is in the agent's config; the gateway's leg is the tunnel
		// (TLS). Agent names the target's agent setting: each of the session's HTTP
		// connections may go through any agent that matches it.
		start.ViaAgent(t.Agent)
		start.UpstreamTLS = true
	}
	if t.Impersonate {
		start.Params = map[string]string{"impersonate": "true"}
	}
	var rec *recorder.Session
	if dec.Settings.Record {
		rec, err = e.d.Recorder.Start(c.ctx, recorder.Info{Protocol: Name, Target: t.Name, User: id.User, Client: c.addr, Mode: t.RecordingMode, Start: start})
		if err != nil {
			log.Error("recording unavailable: session refused", "err", err)
			return nil, &httpError{http.StatusServiceUnavailable, "ServiceUnavailable", "recording is unavailable, so the gateway refuses new sessions: " + err.Error()}
		}
		log = log.With("session", rec.ID())
	} else {
		log.Warn("session not recorded: a policy turns recording off", "rule", dec.Settings.RecordRule)
	}
	sctx, cancel := context.WithCancel(c.ctx)
	if d := dec.Settings.MaxDuration; d > 0 {
		sctx, cancel = context.WithTimeoutCause(c.ctx, d, fmt.Errorf("%w (%s, policy %s)", engine.ErrMaxDuration, d, dec.Rule))
	}
	s := &session{eng: e, t: t, id: id, dec: dec, rec: rec, up: up, token: token, masker: mk, log: log, ctx: sctx, cancel: cancel}
	c.sessions[key] = s
	log.Info("session started", "policy", dec.Rule)
	return s, nil
}

// endSessions closes the recordings of the connection's sessions.
func (c *clientConn) endSessions(reason string, cause error) {
	c.mu.Lock()
	c.closed = true
	sessions := c.sessions
	c.sessions = map[sessionKey]*session{}
	c.mu.Unlock()
	for _, s := range sessions {
		end := event.SessionEndData{Reason: reason, Statements: s.requests.Load(), BytesFromClient: s.fromCli.Load(), BytesToClient: s.toCli.Load()}
		if p := s.failed.Load(); p != nil {
			end.Reason, end.Error = "error", (*p).Error()
		} else if l := s.lost.Load(); l != nil {
			end.Reason, end.Error = "agent_lost", l.Error()
		} else if errors.Is(context.Cause(s.ctx), engine.ErrMaxDuration) {
			end.Reason, end.Error = "error", context.Cause(s.ctx).Error()
		} else if cause != nil && reason != "client_disconnected" {
			end.Error = cause.Error()
		}
		s.cancel()
		if err := s.rec.End(context.WithoutCancel(c.ctx), end); err != nil {
			s.log.Error("closing recording failed", "err", err)
		}
		s.log.Info("session ended", "reason", end.Reason, "requests", end.Statements, "head", s.rec.Head())
	}
}

// status is a Kubernetes Status object, the body of every error the gateway answers.
func status(code int, reason, msg string) map[string]any {
	return map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code}
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) []byte {
	body, _ := json.Marshal(status(code, reason, msg))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(code)
	w.Write(body)
	return body
}
