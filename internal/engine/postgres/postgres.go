package postgres

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// Name is the engine's registry name and the target type it serves.
const Name = "postgres"

func init() {
	engine.Register(Name, func(d engine.Deps) (engine.Engine, error) { return New(d), nil })
}

// Startup-phase request codes (the first 4 bytes of an untyped packet's body).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	maxStartupPacket  = 10000 // PostgreSQL's own limit
	handshakeTimeout  = 30 * time.Second
)

// Engine is the PostgreSQL engine.
type Engine struct {
	d       engine.Deps
	cancels *cancelRegistry
	maskers masking.Cache // compiled masking specs, shared by sessions
	catalog catalog       // table names of column sources, for masking column rules
}

// maskerFor returns the session's masker for a policy's masking specs; nil when there are none.
func (e *Engine) maskerFor(specs []string) (*masker, error) {
	m, err := e.maskers.Get(specs)
	if m == nil || err != nil {
		return nil, err
	}
	return newMasker(m), nil
}

// New returns the engine.
func New(d engine.Deps) *Engine {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{d: d, cancels: newCancelRegistry()}
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return Name }

// Refuse implements engine.Engine: it answers the startup packet with a FATAL error.
func (e *Engine) Refuse(conn net.Conn, reason error) {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	conn.Write(fatal(codeCannotConnectNow, reason.Error(), "").encode(nil))
}

// client is what the handshake learned about the client.
type client struct {
	conn     net.Conn // TLS-wrapped when negotiated
	r        *bufio.Reader
	tls      *tls.ConnectionState
	params   map[string]string
	user     string
	target   string
	database string
	id       *auth.Identity
}

// Serve implements engine.Engine.
func (e *Engine) Serve(ctx context.Context, raw net.Conn) error {
	log := e.d.Log.With("protocol", Name, "client", raw.RemoteAddr().String())
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	c, err := e.handshake(ctx, raw)
	if err != nil {
		var pe *pgError
		if errors.As(err, &pe) {
			log.Info("connection refused", "code", pe.Code, "reason", pe.Message, "user", c.userOrEmpty(), "target", c.targetOrEmpty())
			if c != nil {
				c.conn.Write(pe.encode(nil))
			} else {
				raw.Write(pe.encode(nil))
			}
			return nil
		}
		if errors.Is(err, errCancelHandled) || errors.Is(err, io.EOF) {
			return nil
		}
		log.Debug("handshake failed", "err", err)
		return nil
	}
	log = log.With("user", c.user, "target", c.target)

	t, err := e.d.Targets.Lookup(ctx, c.target)
	if err != nil || t.Type != Name {
		msg := fmt.Sprintf("target %q does not exist", c.target)
		if err == nil {
			msg = fmt.Sprintf("target %q is a %s target, not postgres", c.target, t.Type)
		} else if !errors.Is(err, target.ErrUnknown) {
			msg = "could not look up target: " + err.Error()
		}
		return e.refuse(log, c, fatal(codeInvalidCatalog, msg, "Name a target in dbname: dbname=<target> or dbname=<target>/<database>. `airlock targets list` shows them."))
	}
	dec := e.d.Policy.Decide(c.id, t)
	if !dec.Allow {
		return e.refuse(log, c, fatal(codeInsufficientPriv, "access to target "+t.Name+" denied: "+dec.Reason, "Ask an administrator for a policy that allows you this target."))
	}
	up, err := e.dialUpstream(ctx, t, c.database, c.params)
	if err != nil {
		e.d.Metrics.Error("dial")
		return e.refuse(log, c, upstreamError(t.Name, err))
	}
	// The handshake resolved the target's default database (where the credentials are: for an
	// agent's target, only the agent knows its username).
	c.database = up.database
	if up.via != "" {
		log = log.With("agent", up.via)
	}

	start := event.SessionStartData{
		User: c.id.User, Groups: c.id.Groups, Role: string(c.id.Role), AuthMethod: c.id.Method,
		Target: t.Name, TargetType: t.Type, Database: c.database, ClientAddr: raw.RemoteAddr().String(),
		ApplicationName: c.params["application_name"], TLS: c.tls != nil, Params: c.params,
		Upstream: t.Address, UpstreamTLS: up.TLS, Policy: dec.Rule,
	}
	start.ViaAgent(up.via)
	if c.tls != nil {
		start.TLSVersion = tls.VersionName(c.tls.Version)
	}
	var rec *recorder.Session // nil when the policy turns recording off
	if dec.Settings.Record {
		rec, err = e.d.Recorder.Start(ctx, recorder.Info{Protocol: Name, Target: t.Name, User: c.id.User, Client: raw.RemoteAddr().String(), Mode: t.RecordingMode, Start: start})
		if err != nil {
			up.conn.Close()
			log.Error("recording unavailable: session refused", "err", err)
			return e.refuse(log, c, fatal(codeCannotConnectNow, "recording is unavailable, so the gateway refuses new sessions: "+err.Error(), "Try again later; the gateway's operators have been alerted by its logs and metrics."))
		}
		log = log.With("session", rec.ID())
	} else {
		log.Warn("session not recorded: a policy turns recording off", "rule", dec.Settings.RecordRule)
	}
	log.Info("session started", "database", c.database, "tls", c.tls != nil, "policy", dec.Rule)

	// A cancel request goes to the target the way the session did: through the same agent.
	ct := t
	if up.via != "" {
		ct.Agent = up.via
	}
	key := e.cancels.register(cancelTarget{target: ct, pid: up.PID, secret: up.Secret, connector: e.d.Connector, rec: rec, log: log})
	defer e.cancels.remove(key)

	// Tell the client it is in: authentication done, the target's parameters, our own cancel
	// key (the target's never leaves the gateway), and ready.
	raw.SetDeadline(time.Time{})
	var out []byte
	out, _ = (&pgproto3.AuthenticationOk{}).Encode(out)
	for k, v := range up.Params {
		out, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: key.pid, SecretKey: key.secretBytes()}).Encode(out)
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: up.TxStatus}).Encode(out)
	if _, err := c.conn.Write(out); err != nil {
		up.conn.Close()
		rec.End(context.WithoutCancel(ctx), event.SessionEndData{Reason: "client_disconnected", Error: err.Error()})
		return nil
	}

	mk, err := e.maskerFor(dec.Settings.Masking)
	if err != nil { // validated at start; a failure here is a bug, and fails closed
		up.conn.Close()
		rec.End(context.WithoutCancel(ctx), event.SessionEndData{Reason: "error", Error: err.Error()})
		return e.refuse(log, c, fatal(codeInsufficientPriv, "masking rules of the policy do not compile: "+err.Error(), ""))
	}
	if d := dec.Settings.MaxDuration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("%w (%s, policy %s)", engine.ErrMaxDuration, d, dec.Rule))
		defer cancel()
	}
	r := newRelay(e, log, c, t, up, rec, mk, newGuardrails(dec.Settings.Guardrails, dec.Settings.GuardrailRules))
	end := r.run(ctx)
	if err := rec.End(context.WithoutCancel(ctx), end); err != nil {
		log.Error("closing recording failed", "err", err)
	}
	log.Info("session ended", "reason", end.Reason, "statements", end.Statements,
		"bytes_from_client", end.BytesFromClient, "bytes_to_client", end.BytesToClient, "head", rec.Head())
	return nil
}

func (e *Engine) refuse(log *slog.Logger, c *client, pe *pgError) error {
	log.Info("connection refused", "code", pe.Code, "reason", pe.Message)
	if pe.Code == codeInsufficientPriv {
		e.d.Metrics.Error("policy_denied")
	}
	c.conn.Write(pe.encode(nil))
	return nil
}

func (c *client) userOrEmpty() string {
	if c == nil {
		return ""
	}
	return c.user
}

func (c *client) targetOrEmpty() string {
	if c == nil {
		return ""
	}
	return c.target
}

var errCancelHandled = errors.New("cancel request handled")

// handshake runs the startup phase: TLS negotiation, the startup message and the password. It
// returns a *pgError for anything the client should be told.
func (e *Engine) handshake(ctx context.Context, raw net.Conn) (*client, error) {
	conn := raw
	var tlsState *tls.ConnectionState
	br := bufio.NewReaderSize(conn, 512)

	// PostgreSQL 17 clients may open with a TLS ClientHello directly (sslnegotiation=direct).
	if first, err := br.Peek(1); err == nil && first[0] == 0x16 && e.d.TLS != nil {
		tc, err := e.startTLS(raw, br, true)
		if err != nil {
			return nil, err
		}
		conn, br = tc, bufio.NewReaderSize(tc, 512)
		st := tc.ConnectionState()
		tlsState = &st
	}

	for {
		body, err := readStartup(br, maxStartupPacket)
		if err != nil {
			return nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case codeSSLRequest:
			if tlsState != nil {
				return nil, fatal(codeProtocolViolation, "SSLRequest on an already encrypted connection", "")
			}
			if br.Buffered() > 0 {
				// Bytes after SSLRequest and before our answer could be injected by a
				// man in the middle (CVE-2021-23222); refuse.
				return nil, fatal(codeProtocolViolation, "unexpected data after SSLRequest", "")
			}
			if e.d.TLS == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc, err := e.startTLS(raw, br, false)
			if err != nil {
				return nil, err
			}
			conn, br = tc, bufio.NewReaderSize(tc, 512)
			st := tc.ConnectionState()
			tlsState = &st
		case codeGSSENCRequest:
			// No GSSAPI encryption: say no, and the client goes on with TLS or plain.
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case codeCancelRequest:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err == nil {
				e.cancels.cancel(ctx, cr.ProcessID, cr.SecretKey)
			}
			return nil, errCancelHandled
		default:
			c := &client{conn: conn, tls: tlsState}
			var sm pgproto3.StartupMessage
			if err := sm.Decode(body); err != nil {
				return nil, fatal(codeProtocolViolation, "unsupported startup message: "+err.Error(), "Use a client that speaks protocol 3.0.")
			}
			c.r = br
			return c, e.startup(ctx, c, &sm)
		}
	}
}

// startTLS runs the server side of a TLS handshake on raw. Bytes already read into br belong to
// the ClientHello when direct is set.
func (e *Engine) startTLS(raw net.Conn, br *bufio.Reader, direct bool) (*tls.Conn, error) {
	cfg := e.d.TLS.Clone()
	if direct {
		cfg.NextProtos = []string{"postgresql"}
	}
	var under net.Conn = raw
	if br.Buffered() > 0 {
		under = &prefixConn{Conn: raw, r: br}
	}
	tc := tls.Server(under, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if direct && tc.ConnectionState().NegotiatedProtocol != "postgresql" {
		return nil, errors.New("direct TLS without the postgresql ALPN protocol")
	}
	return tc, nil
}

// prefixConn reads first from a bufio.Reader that holds bytes already taken off the socket.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// startup checks the startup parameters and authenticates the user.
func (e *Engine) startup(ctx context.Context, c *client, sm *pgproto3.StartupMessage) error {
	if sm.ProtocolVersion != pgproto3.ProtocolVersion30 || hasProtocolOptions(sm.Parameters) {
		// Ask for 3.0 without extensions: our cancel keys and the upstream session are 3.0.
		var opts []string
		for k := range sm.Parameters {
			if strings.HasPrefix(k, "_pq_.") {
				opts = append(opts, k)
				delete(sm.Parameters, k)
			}
		}
		msg, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: opts}).Encode(nil)
		if _, err := c.conn.Write(msg); err != nil {
			return err
		}
	}
	c.params = map[string]string{}
	for k, v := range sm.Parameters {
		c.params[k] = v
	}
	c.user = sm.Parameters["user"]
	delete(c.params, "user")
	db := sm.Parameters["database"]
	delete(c.params, "database")
	if c.user == "" {
		return fatal(codeInvalidAuthSpec, "no user name in the startup message", "Connect with user=<your airlock user name>.")
	}
	if db == "" {
		db = c.user
	}
	c.target, c.database, _ = strings.Cut(db, "/")
	if _, ok := c.params["replication"]; ok {
		return fatal(codeFeatureNotSupported, "replication connections are not supported through the gateway", "")
	}

	if c.tls == nil && !(e.d.Config.Postgres.AllowPlaintextLoopback && isLoopback(c.conn.RemoteAddr())) {
		return fatal(codeInvalidAuthSpec, "the gateway requires TLS: your password would otherwise cross the network in clear",
			"Connect with sslmode=require (or prefer, the default). Plaintext is allowed only from loopback and only when postgres.allow_plaintext_loopback is set.")
	}

	msg, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	if _, err := c.conn.Write(msg); err != nil {
		return err
	}
	var buf []byte
	typ, body, err := readMessage(c.r, &buf, 4096)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// psql first tries without a password and reconnects after prompting for one.
			return io.EOF
		}
		return err
	}
	if typ != 'p' {
		return fatal(codeProtocolViolation, fmt.Sprintf("expected a password message, got %q", typ), "")
	}
	var pm pgproto3.PasswordMessage
	if err := pm.Decode(buf[body:]); err != nil {
		return fatal(codeProtocolViolation, "malformed password message", "")
	}
	id, err := e.d.Auth.Authenticate(ctx, c.user, pm.Password)
	clear(buf)
	if err != nil {
		e.d.Metrics.AuthFailuresInc(Name)
		e.d.Log.Info("authentication failed", "protocol", Name, "user", c.user, "client", c.conn.RemoteAddr().String(), "err", err)
		if e.d.Audit != nil {
			// The client waits for this answer anyway; an audit failure is logged, and the
			// login is refused all the same.
			if aerr := e.d.Audit.Record(ctx, audit.Entry{Action: audit.ActionLogin, Actor: c.user, Outcome: audit.Denied,
				Client: c.conn.RemoteAddr().String(), Detail: map[string]string{"protocol": Name, "target": c.target, "reason": auth.Reason(err)}}); aerr != nil {
				e.d.Log.Error("audit log: failed login not recorded", "err", aerr)
			}
		}
		return fatal(codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", c.user),
			"Use your Airlock password or a token from `airlock login`.")
	}
	c.id = id
	return nil
}

func hasProtocolOptions(p map[string]string) bool {
	for k := range p {
		if strings.HasPrefix(k, "_pq_.") {
			return true
		}
	}
	return false
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	_, isUnix := a.(*net.UnixAddr)
	return isUnix
}
