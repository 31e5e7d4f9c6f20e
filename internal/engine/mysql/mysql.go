package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// Name is the engine's registry name and the target type it serves.
const Name = "mysql"

func init() {
	engine.Register(Name, func(d engine.Deps) (engine.Engine, error) { return New(d), nil })
}

const handshakeTimeout = 30 * time.Second

// Engine is the MySQL engine.
type Engine struct {
	d       engine.Deps
	maskers masking.Cache // compiled masking specs, shared by sessions
}

// New returns the engine.
func New(d engine.Deps) *Engine {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{d: d}
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return Name }

// Refuse implements engine.Engine: a client expects the server's greeting first, and an ERR
// packet in its place is how a MySQL server refuses a connection.
func (e *Engine) Refuse(conn net.Conn, reason error) {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var seq byte
	conn.Write(appendPacket(nil, &seq, newError(codeServerShutdown, reason.Error()).payload()))
}

// maskerFor returns the session's masker for a policy's masking specs; nil when there are none.
func (e *Engine) maskerFor(specs []string) (*masker, error) {
	m, err := e.maskers.Get(specs)
	if m == nil || err != nil {
		return nil, err
	}
	return newMasker(m), nil
}

// Serve implements engine.Engine.
func (e *Engine) Serve(ctx context.Context, raw net.Conn) error {
	log := e.d.Log.With("protocol", Name, "client", raw.RemoteAddr().String())
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	c, err := e.handshake(ctx, raw)
	if err != nil {
		var me *myError
		if errors.As(err, &me) && c != nil {
			log.Info("connection refused", "code", me.code, "reason", me.msg, "user", c.user, "target", c.target)
			c.write(me.payload())
			return nil
		}
		if !errors.Is(err, io.EOF) {
			log.Debug("handshake failed", "err", err)
		}
		return nil
	}
	log = log.With("user", c.user, "target", c.target)

	if c.target == "" {
		return e.refuse(log, c, newError(codeBadDB, "no target named: connect with the database <target> or <target>/<database> (`airlock targets list` shows them)"))
	}
	t, err := e.d.Targets.Lookup(ctx, c.target)
	if err != nil || t.Type != Name {
		msg := fmt.Sprintf("Unknown database '%s': no such target", c.target)
		if err == nil {
			msg = fmt.Sprintf("Unknown database '%s': target %s is a %s target, not mysql", c.target, c.target, t.Type)
		} else if !errors.Is(err, target.ErrUnknown) {
			msg = "could not look up target: " + err.Error()
		}
		return e.refuse(log, c, newError(codeBadDB, msg+". Connect with the database <target> or <target>/<database>."))
	}
	dec := e.d.Policy.Decide(c.id, t)
	if !dec.Allow {
		return e.refuse(log, c, newError(codeDeniedByPolicy, "access to target "+t.Name+" denied: "+dec.Reason))
	}
	if c.database == "" {
		c.database = t.Database
	}

	up, err := e.dialUpstream(ctx, t, c)
	if err != nil {
		e.d.Metrics.Error("dial")
		return e.refuse(log, c, upstreamError(t.Name, err))
	}

	start := event.SessionStartData{
		User: c.id.User, Groups: c.id.Groups, Role: string(c.id.Role), AuthMethod: c.id.Method,
		Target: t.Name, TargetType: t.Type, Database: c.database, ClientAddr: raw.RemoteAddr().String(),
		ApplicationName: c.attrs["program_name"], TLS: c.tls != nil, Params: c.attrs,
		Upstream: t.Address, UpstreamTLS: up.tls, Policy: dec.Rule,
	}
	start.ViaAgent(up.via)
	if up.via != "" {
		log = log.With("agent", up.via)
	}
	if c.tls != nil {
		start.TLSVersion = tls.VersionName(c.tls.Version)
	}
	var rec *recorder.Session // nil when the policy turns recording off
	if dec.Settings.Record {
		rec, err = e.d.Recorder.Start(ctx, recorder.Info{Protocol: Name, Target: t.Name, User: c.id.User, Client: raw.RemoteAddr().String(), Mode: t.RecordingMode, Start: start})
		if err != nil {
			up.conn.Close()
			log.Error("recording unavailable: session refused", "err", err)
			return e.refuse(log, c, newError(codeRecording, "recording is unavailable, so the gateway refuses new sessions: "+err.Error()))
		}
		log = log.With("session", rec.ID())
	} else {
		log.Warn("session not recorded: a policy turns recording off", "rule", dec.Settings.RecordRule)
	}
	log.Info("session started", "database", c.database, "tls", c.tls != nil, "policy", dec.Rule)

	mk, err := e.maskerFor(dec.Settings.Masking)
	if err != nil { // validated at start; a failure here is a bug, and fails closed
		up.conn.Close()
		rec.End(context.WithoutCancel(ctx), event.SessionEndData{Reason: "error", Error: err.Error()})
		return e.refuse(log, c, newError(codeDeniedByPolicy, "masking rules of the policy do not compile: "+err.Error()))
	}
	// The client is in: the final OK of the connection phase, with the target's status (its
	// sql_mode's NO_BACKSLASH_ESCAPES tells the client how to escape strings).
	raw.SetDeadline(time.Time{})
	if err := c.write(okPacket(up.status & sessionStatus)); err != nil {
		up.conn.Close()
		rec.End(context.WithoutCancel(ctx), event.SessionEndData{Reason: "client_disconnected", Error: err.Error()})
		return nil
	}
	if d := dec.Settings.MaxDuration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("%w (%s, policy %s)", engine.ErrMaxDuration, d, dec.Rule))
		defer cancel()
	}
	r := newRelay(e, log, c, up, rec, mk, newGuardrails(dec.Settings.Guardrails, dec.Settings.GuardrailRules), dec.Settings.LocalInfile)
	end := r.run(ctx)
	if err := rec.End(context.WithoutCancel(ctx), end); err != nil {
		log.Error("closing recording failed", "err", err)
	}
	log.Info("session ended", "reason", end.Reason, "statements", end.Statements,
		"bytes_from_client", end.BytesFromClient, "bytes_to_client", end.BytesToClient, "head", rec.Head())
	return nil
}

func (e *Engine) refuse(log *slog.Logger, c *client, me *myError) error {
	log.Info("connection refused", "code", me.code, "reason", me.msg)
	if me.code == codeDeniedByPolicy {
		e.d.Metrics.Error("policy_denied")
	}
	c.write(me.payload())
	return nil
}

// agentERR is the target's ERR from the handshake an agent ran (its code travels as "ERRNO
// SQLSTATE" in the AgentError), or nil.
func agentERR(err error) *gomysqlError {
	var ae *connector.AgentError
	if !errors.As(err, &ae) || ae.Code == "" {
		return nil
	}
	var code uint16
	var state string
	if n, _ := fmt.Sscanf(ae.Code, "%d %s", &code, &state); n != 2 || code == 0 || len(state) != 5 {
		return nil
	}
	msg := ae.Err.Error()
	msg = strings.TrimPrefix(msg, fmt.Sprintf("ERROR %d (%s): ", code, state)) // go-mysql's form of an ERR
	return &gomysqlError{Code: code, State: state, Message: msg}
}

// upstreamError tells the client why the target could not be reached: the target's own ERR
// (wrong target credentials, unknown database) is passed on with its code.
func upstreamError(name string, err error) *myError {
	var me *gomysqlError
	if !errors.As(err, &me) {
		me = agentERR(err)
	}
	if me != nil {
		switch me.Code {
		case codeAccessDenied, gomysql.ER_DBACCESS_DENIED_ERROR, gomysql.ER_HOST_NOT_PRIVILEGED, gomysql.ER_HOST_IS_BLOCKED:
			// Not the client's password: the gateway's own login to the target failed.
			return newError(codeTargetDown, fmt.Sprintf("target %s refused the gateway's login (%d): %s", name, me.Code, me.Message))
		}
		return &myError{code: me.Code, state: me.State, msg: "target " + name + ": " + me.Message}
	}
	var tr *targetRefused
	if errors.As(err, &tr) {
		return newError(codeTargetDown, "target "+name+": "+tr.Error())
	}
	return newError(codeTargetDown, fmt.Sprintf("Can't connect to target %s: %v", name, err))
}
