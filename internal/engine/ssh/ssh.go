package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// Name is the engine's registry name and the target type it serves.
const Name = "ssh"

func init() {
	engine.Register(Name, func(d engine.Deps) (engine.Engine, error) { return New(d) })
}

const (
	handshakeTimeout = 30 * time.Second
	// keepaliveInterval is how often the gateway checks that both peers still answer; a peer
	// that has not answered within keepaliveTimeout ends the session (no half-dead relays).
	keepaliveInterval = 30 * time.Second
	keepaliveTimeout  = 30 * time.Second
)

// KeyAuthenticator says whose registered public key a key is (internal/auth.Service). The
// gateway's Authenticator implements it; without it only passwords and tokens are accepted.
type KeyAuthenticator interface {
	AuthenticatePublicKey(ctx context.Context, user string, key ssh.PublicKey) (*auth.Identity, error)
}

// Engine is the SSH engine.
type Engine struct {
	d       engine.Deps
	hostKey ssh.Signer
	keys    KeyAuthenticator  // nil: no public key logins
	ca      *UserCA           // nil: no certificate logins
	revoked RevocationChecker // nil: certificates are not checked against revocations
	// nil: the subject of a certificate is not looked up at login
	subjects SubjectChecker
	maskers  sync.Map // joined masking specs -> *masking.Masker
	// Keepalive settings; tests shorten them.
	keepaliveInterval, keepaliveTimeout time.Duration
}

// New returns the engine, with the gateway's SSH host key from data_dir/ssh/ (generated on
// first start).
func New(d engine.Deps) (*Engine, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{d: d, keepaliveInterval: keepaliveInterval, keepaliveTimeout: keepaliveTimeout}
	if d.Config != nil {
		hk, created, err := loadOrCreateHostKey(d.Config.DataDir)
		if err != nil {
			return nil, err
		}
		if created {
			d.Log.Info("generated the SSH host key", "fingerprint", ssh.FingerprintSHA256(hk.PublicKey()))
		}
		e.hostKey = hk
		ca, err := loadOrCreateUserCA(d.Config.DataDir)
		if err != nil {
			return nil, err
		}
		e.ca = ca
	}
	if k, ok := d.Auth.(KeyAuthenticator); ok {
		e.keys = k
	}
	if r, ok := d.Auth.(RevocationChecker); ok {
		e.revoked = r
	}
	if sc, ok := d.Auth.(SubjectChecker); ok {
		e.subjects = sc
	}
	return e, nil
}

// UserCA is the gateway's SSH user CA (in data_dir/ssh/), which signs the certificates the
// engine accepts; nil without a data_dir.
func (e *Engine) UserCA() *UserCA { return e.ca }

// Name implements engine.Engine.
func (e *Engine) Name() string { return Name }

// Refuse implements engine.Engine: it completes the key exchange and refuses authentication
// with a banner that says why.
func (e *Engine) Refuse(conn net.Conn, reason error) {
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cfg := &ssh.ServerConfig{
		NoClientAuth: true,
		NoClientAuthCallback: func(ssh.ConnMetadata) (*ssh.Permissions, error) {
			return nil, &ssh.BannerError{Err: reason, Message: "airlock: " + reason.Error() + "\r\n"}
		},
		PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, reason },
		MaxAuthTries:     1,
	}
	cfg.AddHostKey(e.hostKey)
	ssh.NewServerConn(conn, cfg)
}

// clientCiphers are the ciphers the listener offers. OpenSSH clients pick chacha20-poly1305
// first when the server has it, and x/crypto's chacha20 has no assembly on amd64 (as of
// 2026-11): there it costs the gateway several times what AES does with AES-NI, and bulk
// transfers run at a fraction of their speed. So on amd64 the listener offers AES only (GCM,
// then CTR, which every OpenSSH since 2013 has), and only GCM to a client that announced it
// (peekCiphers). Elsewhere it keeps x/crypto's defaults.
func clientCiphers() []string {
	if runtime.GOARCH != "amd64" {
		return nil
	}
	return []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"}
}

// splitLogin splits the SSH user name "<airlock user>:<target>". "<airlock user>+<target>" is
// the same (split at the last '+'), for the tools that read a ':' in "user@host:path" as the
// end of the host (scp, rsync).
func splitLogin(login string) (user, target string, ok bool) {
	if u, t, ok := strings.Cut(login, ":"); ok {
		return u, t, true
	}
	if i := strings.LastIndexByte(login, '+'); i >= 0 {
		return login[:i], login[i+1:], true
	}
	return login, "", false
}

// userError is a refusal whose message is for the client.
type userError struct{ msg string }

func (u *userError) Error() string { return u.msg }

// conn is one client connection during authentication.
type conn struct {
	e    *Engine
	raw  net.Conn
	ctx  context.Context
	log  *slog.Logger
	pre  ssh.ServerPreAuthConn
	fail string // the last reason a login was refused, for the audit log

	// Set once admitted.
	id      *auth.Identity
	user    string // airlock user name
	target  target.Target
	dec     policy.Decision
	up      *ssh.Client
	upInfo  upstreamInfo
	method  string
	keyFP   string
	refused bool // admission failed after the credentials were good
}

// Serve implements engine.Engine.
func (e *Engine) Serve(ctx context.Context, raw net.Conn) error {
	log := e.d.Log.With("protocol", Name, "client", raw.RemoteAddr().String())
	c := &conn{e: e, raw: raw, ctx: ctx, log: log}
	deadline := time.Now().Add(handshakeTimeout)
	raw.SetDeadline(deadline)
	cfg := e.serverConfig(c)
	hc := raw
	if cfg.Ciphers != nil { // amd64: prefer AES-GCM when the client has it (kexpeek.go)
		pc, offer, err := peekCiphers(newCoalesceConn(raw), cfg.ServerVersion, deadline)
		if err != nil {
			log.Debug("ssh handshake ended", "err", err)
			return nil
		}
		if offer != nil {
			cfg.Ciphers = offer
		}
		hc = pc
	}
	sc, chans, reqs, err := ssh.NewServerConn(hc, cfg)
	if err != nil {
		if c.up != nil {
			c.up.Close()
		}
		var ae *ssh.ServerAuthError
		if errors.As(err, &ae) && c.fail != "" && !c.refused {
			e.d.Metrics.AuthFailuresInc(Name)
			e.auditLogin(ctx, c, audit.Denied, c.fail)
		}
		log.Debug("ssh handshake ended", "err", err)
		return nil
	}
	raw.SetDeadline(time.Time{})
	log = log.With("user", c.user, "target", c.target.Name)
	defer c.up.Close()

	dec := c.dec
	t := c.target
	start := event.SessionStartData{
		User: c.id.User, Groups: c.id.Groups, Role: string(c.id.Role), AuthMethod: c.method,
		Target: t.Name, TargetType: t.Type, ClientAddr: raw.RemoteAddr().String(),
		ApplicationName: string(sc.ClientVersion()), TLS: true, TLSVersion: "ssh",
		Upstream: t.Address, UpstreamTLS: true, Policy: dec.Rule,
		Params: map[string]string{"login": c.upInfo.Login, "client_version": string(sc.ClientVersion()),
			"upstream_version": c.upInfo.Version},
	}
	start.ViaAgent(c.upInfo.Via)
	if c.keyFP != "" {
		start.Params["key_fingerprint"] = c.keyFP
	}
	var rec *recorder.Session
	if dec.Settings.Record {
		rec, err = e.d.Recorder.Start(ctx, recorder.Info{Protocol: Name, Target: t.Name, User: c.id.User,
			Client: raw.RemoteAddr().String(), Mode: t.RecordingMode, Start: start})
		if err != nil {
			log.Error("recording unavailable: session refused", "err", err)
			rejectAll(sc, chans, reqs, "airlock: recording is unavailable, so the gateway refuses new sessions: "+err.Error())
			return nil
		}
		log = log.With("session", rec.ID())
	} else {
		log.Warn("session not recorded: a policy turns recording off", "rule", dec.Settings.RecordRule)
	}
	log.Info("session started", "policy", dec.Rule, "method", c.method)

	mk, err := e.maskerFor(dec.Settings.Masking)
	if err != nil {
		rejectAll(sc, chans, reqs, "airlock: masking rules of the policy do not compile: "+err.Error())
		rec.End(context.WithoutCancel(ctx), event.SessionEndData{Reason: "error", Error: err.Error()})
		return nil
	}
	var deny []*regexp.Regexp
	for _, p := range dec.Settings.SSHDenyCommands {
		re, err := regexp.Compile(p)
		if err != nil { // validated with the policy
			continue
		}
		deny = append(deny, re)
	}
	if d := dec.Settings.MaxDuration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("%w (%s, policy %s)", engine.ErrMaxDuration, d, dec.Rule))
		defer cancel()
	}
	s := newSession(e, log, c, sc, rec, mk, deny)
	end := s.run(ctx, chans, reqs)
	if err := rec.End(context.WithoutCancel(ctx), end); err != nil {
		log.Error("closing recording failed", "err", err)
	}
	log.Info("session ended", "reason", end.Reason, "channels", end.Statements,
		"bytes_from_client", end.BytesFromClient, "bytes_to_client", end.BytesToClient, "head", rec.Head())
	return nil
}

// rejectAll serves a connection whose session cannot start: every channel is rejected with msg
// (OpenSSH prints it), then the connection closes.
func rejectAll(sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, msg string) {
	go ssh.DiscardRequests(reqs)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case nc, ok := <-chans:
		if ok {
			nc.Reject(ssh.ConnectionFailed, msg)
		}
	case <-timer.C:
	}
	sc.Close()
}

func (e *Engine) maskerFor(specs []string) (*masking.Masker, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	key := strings.Join(specs, "\x00")
	if m, ok := e.maskers.Load(key); ok {
		return m.(*masking.Masker), nil
	}
	m, err := masking.New(specs)
	if err != nil {
		return nil, err
	}
	e.maskers.Store(key, m)
	return m, nil
}

// serverConfig is the connection's SSH server configuration: its callbacks fill in c.
func (e *Engine) serverConfig(c *conn) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		Config:              ssh.Config{Ciphers: clientCiphers()},
		ServerVersion:       "SSH-2.0-Airlock",
		PreAuthConnCallback: func(p ssh.ServerPreAuthConn) { c.pre = p },
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			return c.secret(meta, "password", string(pw))
		},
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			user, tgt, _ := splitLogin(meta.User())
			answers, err := ch("", fmt.Sprintf("Airlock: %s to %s", user, tgt), []string{"Password or token: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				return nil, errors.New("expected one answer")
			}
			return c.secret(meta, "keyboard-interactive", answers[0])
		},
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				c.log.Debug("ssh authentication attempt failed", "user", meta.User(), "method", method, "err", err)
			}
		},
		BannerCallback: nil,
	}
	if e.keys != nil || e.ca != nil {
		cfg.PublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			// Only says whether the key would do; the client has not proven it holds it yet.
			user, _, ok := splitLogin(meta.User())
			if !ok {
				if c.fail == "" && c.pre != nil {
					c.pre.SendAuthBanner(fmt.Sprintf("airlock: name the target in the user name: ssh -p PORT %s:TARGET@GATEWAY\r\n", user))
				}
				c.fail = "no target in the user name"
				return nil, errors.New("no target in the user name")
			}
			if _, err := e.keyIdentity(c.ctx, user, key); err != nil {
				c.fail = "public key not registered for " + user
				return nil, err
			}
			return &ssh.Permissions{}, nil
		}
		cfg.VerifiedPublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			user, _, _ := splitLogin(meta.User())
			id, err := e.keyIdentity(c.ctx, user, key)
			if err != nil {
				return nil, err
			}
			c.keyFP = ssh.FingerprintSHA256(key)
			return c.admit(meta, id)
		}
	}
	cfg.AddHostKey(e.hostKey)
	return cfg
}

// keyIdentity resolves a public key or a certificate of the gateway's CA to an identity.
func (e *Engine) keyIdentity(ctx context.Context, user string, key ssh.PublicKey) (*auth.Identity, error) {
	if cert, ok := key.(*ssh.Certificate); ok {
		return e.certIdentity(ctx, user, cert)
	}
	if e.keys == nil {
		return nil, auth.ErrBadCredentials
	}
	return e.keys.AuthenticatePublicKey(ctx, user, key)
}

// secret authenticates a password or token typed for user "<airlock user>:<target>".
func (c *conn) secret(meta ssh.ConnMetadata, method, secret string) (*ssh.Permissions, error) {
	user, _, ok := splitLogin(meta.User())
	if !ok {
		c.fail = "no target in the user name"
		return nil, c.banner(errors.New("no target"), fmt.Sprintf("name the target in the user name: ssh -p PORT %s:TARGET@GATEWAY", meta.User()))
	}
	id, err := c.e.d.Auth.Authenticate(c.ctx, user, secret)
	if err != nil {
		c.fail = "bad password or token"
		return nil, err
	}
	if id.Method == "" {
		id.Method = method
	}
	return c.admit(meta, id)
}

func (c *conn) banner(err error, msg string) error {
	return &ssh.BannerError{Err: err, Message: "airlock: " + msg + "\r\n"}
}

// admit runs once the client has proven who it is: the target, the policy, and the connection
// to the target. A refusal is sent as a banner (OpenSSH prints it), and authentication then
// ends with no method left to try, so that the client does not go on to prompt for a password.
func (c *conn) admit(meta ssh.ConnMetadata, id *auth.Identity) (*ssh.Permissions, error) {
	user, tname, _ := splitLogin(meta.User())
	c.user = user
	refuse := func(msg string) (*ssh.Permissions, error) {
		c.refused = true
		c.log.Info("connection refused", "user", user, "target", tname, "reason", msg)
		if c.pre != nil {
			c.pre.SendAuthBanner("airlock: " + msg + "\r\n")
		}
		c.e.auditLogin(c.ctx, c, audit.Denied, msg)
		return nil, &ssh.PartialSuccessError{}
	}
	if tname == "" {
		return refuse(fmt.Sprintf("name the target in the user name: ssh -p PORT %s:TARGET@GATEWAY", user))
	}
	t, err := c.e.d.Targets.Lookup(c.ctx, tname)
	if err != nil || t.Type != Name {
		msg := fmt.Sprintf("target %q does not exist", tname)
		if err == nil {
			msg = fmt.Sprintf("target %q is a %s target, not ssh", tname, t.Type)
		} else if !errors.Is(err, target.ErrUnknown) {
			msg = "could not look up target: " + err.Error()
		}
		return refuse(msg + " (`airlock targets list` shows them)")
	}
	dec := c.e.d.Policy.Decide(id, t)
	if !dec.Allow {
		c.e.d.Metrics.Error("policy_denied")
		return refuse("access to target " + t.Name + " denied: " + dec.Reason)
	}
	up, info, err := c.e.dialTarget(c.ctx, t)
	if err != nil {
		c.e.d.Metrics.Error("dial")
		var ue *userError
		if errors.As(err, &ue) {
			return refuse(ue.msg)
		}
		return refuse(fmt.Sprintf("cannot reach target %s: %v", t.Name, err))
	}
	if c.up != nil { // a second admission on one connection (cannot happen: auth ends at success)
		c.up.Close()
	}
	c.id, c.target, c.dec, c.up, c.upInfo, c.method = id, t, dec, up, info, id.Method
	return &ssh.Permissions{}, nil
}

func (e *Engine) auditLogin(ctx context.Context, c *conn, outcome, reason string) {
	if e.d.Audit == nil {
		return
	}
	user, tgt, _ := splitLogin(userOf(c))
	if err := e.d.Audit.Record(ctx, audit.Entry{Action: audit.ActionLogin, Actor: user, Outcome: outcome,
		Client: c.raw.RemoteAddr().String(), Detail: map[string]string{"protocol": Name, "target": tgt, "reason": reason}}); err != nil {
		e.d.Log.Error("audit log: login not recorded", "err", err)
	}
}

func userOf(c *conn) string {
	if c.pre != nil {
		return c.pre.User()
	}
	return c.user
}
