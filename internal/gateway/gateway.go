package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-gw/airlock/internal/agent"
	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/oidc"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/retention"
	"github.com/airlock-gw/airlock/internal/sealbox"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
	"github.com/airlock-gw/airlock/internal/ui"
	"github.com/airlock-gw/airlock/internal/version"
	"gopkg.in/yaml.v3"
)

// Gateway is a running server.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	store   store.Store
	metrics *metrics.Metrics

	addrs     map[string]string       // listen address by protocol
	listeners map[string]net.Listener // by protocol, plus "api"
	engines   map[string]engine.Engine
	apiServer *http.Server
	audit     *audit.Log     // this run's audit log, ended at Shutdown
	agents    *agent.Hub     // nil when listen.agents is off
	retention *retention.Job // expires recordings; started by Start, stopped at Shutdown

	ready      atomic.Bool
	sessions   sync.WaitGroup
	sessCtx    context.Context
	endAll     context.CancelCauseFunc
	serveGroup sync.WaitGroup
}

// New builds a gateway from cfg: it opens the store, prepares identities, TLS and engines, but
// listens on nothing yet. Announcements meant for the operator (the generated admin password)
// go to out.
func New(cfg *config.Config, log *slog.Logger, out io.Writer) (*Gateway, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log, store: st, metrics: metrics.New(), listeners: map[string]net.Listener{}, engines: map[string]engine.Engine{}}
	g.sessCtx, g.endAll = context.WithCancelCause(context.Background())
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()

	authSvc, err := g.identities(out)
	if err != nil {
		return nil, err
	}
	catalog := &target.Catalog{Static: map[string]target.Target{}, Store: st}
	for _, t := range cfg.Targets {
		pw, err := t.ResolvePassword()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		tt := target.Target{Name: t.Name, Type: t.Type, Address: t.Address, Agent: t.Agent, Database: t.Database, Username: t.Username,
			Password: pw, TLS: t.TLS, CAFile: t.CAFile, PrivateKeyFile: t.PrivateKeyFile, HostKey: t.HostKey, Labels: t.Labels, RecordingMode: t.Recording.Mode, RetentionDays: t.RetentionDays, Source: "config",
			Token: t.Token, TokenFile: t.TokenFile, ClientCertFile: t.ClientCertFile, ClientKeyFile: t.ClientKeyFile, Impersonate: t.Impersonate}
		if err := tt.Validate(); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		catalog.Static[t.Name] = tt
	}
	// Policies: the config file's, fixed, then those managed through the API; checked as a
	// whole, masking specs included, so that a bad rule stops the gateway here.
	policy.MaskingCheck = func(specs []string) error { _, err := masking.New(specs); return err }
	if err := policy.Validate(cfg.Policies); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	stored, err := api.StoredPolicies(context.Background(), st)
	if err != nil {
		return nil, err
	}
	rules := append(slices.Clone(cfg.Policies), stored...)
	if err := policy.Validate(rules); err != nil {
		return nil, fmt.Errorf("policies stored through the API (%s) do not go with the config file's: %w", api.PolicyKey, err)
	}
	pol := policy.New(rules)
	if len(rules) == 0 {
		log.Warn("no policies configured: every authenticated user reaches every target (add `policies:` to the config to restrict access)")
	}

	cert, created, err := loadOrCreateCert(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated a self-signed TLS certificate", "dir", cfg.DataDir+"/tls")
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// Agents (issue 8): with listen.agents, the hub is the connector of every engine (it
	// dials a target without an agent directly) and adds the targets agents announce.
	var conn connector.Connector = connector.Direct{}
	if a := cfg.Listen.Agents; a != "" && a != "off" {
		g.agents = &agent.Hub{Registry: &agent.Registry{KV: st}, Cert: cert, Addr: agent.TokenAddr(cfg.Agents.Advertise, a, ""), Audit: lateAudit{g}, Log: log}
		catalog.Announced = g.agents
		conn = g.agents
	}

	// Integrity (issue 3): the checkpoint signing key, then crash recovery of the sessions a
	// previous process left running, before any new session starts.
	keys, created, err := signing.Open(filepath.Join(cfg.DataDir, "signing"), cfg.Recording.SigningKeyFile, nil)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated the recording signing key", "key_id", keys.KeyID(), "dir", filepath.Join(cfg.DataDir, "signing"))
	}
	if cfg.Store != "" && cfg.Store != "file" && cfg.Recording.SigningKeyFile == "" {
		log.Warn("the store is shared but this gateway signs with a key of its own data_dir: replicas sharing the store must share recording.signing_key_file, or verifying one replica's recordings on another reports unknown_key (docs/storage-postgres.md)",
			"key_id", keys.KeyID())
	}
	sealer, created, err := sealbox.Load(filepath.Join(cfg.DataDir, "keys"), cfg.Recording.EncryptionKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated the recording encryption key", "key_id", sealer.KeyID(), "dir", filepath.Join(cfg.DataDir, "keys"))
	}
	rec := &recorder.Recorder{Store: st, Metrics: g.metrics, Signer: keys,
		CheckpointEvents: cfg.Recording.CheckpointEvents, CheckpointInterval: cfg.Recording.CheckpointInterval,
		BestEffortBuffer: cfg.Recording.BestEffortBuffer}
	if n, err := rec.Recover(context.Background(), log, keys.Public()); err != nil {
		log.Error("crash recovery could not close every interrupted session", "recovered", n, "err", err)
	} else if n > 0 {
		log.Warn("crash recovery closed sessions left running by the previous gateway process", "sessions", n)
	}
	// The audit log is opened below; approvals are audited once it is set, before any listener
	// opens.
	approvals := &approval.Broker{Timeout: cfg.Approvals.Timeout, Webhook: cfg.Approvals.Webhook,
		APIURL: "http://" + cfg.Listen.API, Log: log}
	idps := oidc.NewSet(cfg.OIDC)
	deps := engine.Deps{Config: cfg, TLS: tlsCfg, Auth: authenticator{authSvc, idps}, Targets: catalog, Policy: scoped{pol},
		Connector: conn, Recorder: rec, Log: log, Metrics: g.metrics, Approvals: approvals,
		Audit: lateAudit{g}, Sealer: sealer}
	// Each engine registers itself from a file of this package (engine_*.go imports it).
	g.addrs = map[string]string{"postgres": cfg.Listen.Postgres, "mysql": cfg.Listen.MySQL, "ssh": cfg.Listen.SSH, "kubernetes": cfg.Listen.Kubernetes}
	for name, addr := range g.addrs {
		if addr == "" || addr == "off" {
			continue
		}
		e, err := engine.New(name, deps)
		if err != nil {
			return nil, err
		}
		g.engines[name] = e
	}

	// The audit log is this run's own recording; the previous run's, if it did not end it, was
	// just closed as interrupted by crash recovery. Nothing fails after it is opened.
	if g.audit, err = audit.Open(context.Background(), rec); err != nil {
		return nil, err
	}
	digest := configDigest(cfg)
	if err := g.audit.Record(context.Background(), audit.Entry{Action: audit.ActionGatewayStart, Actor: audit.User, Outcome: audit.OK,
		Detail: map[string]string{"version": version.String(), "pid": strconv.Itoa(os.Getpid()),
			"config_file": cfg.Path(), "config_sha256": digest, "signing_key_id": keys.KeyID()}}); err != nil {
		g.audit.End(context.Background())
		return nil, err
	}
	if err := auditConfigChange(context.Background(), st, g.audit, cfg.Path(), digest); err != nil {
		g.audit.End(context.Background())
		return nil, err
	}
	log.Info("audit log opened", "session", g.audit.ID())
	g.retention = &retention.Job{Store: st, Targets: catalog, Audit: g.audit, Log: log, Interval: cfg.Retention.Interval}
	approvals.Audit = g.audit
	srv := &api.Server{Store: st, Auth: authSvc, Targets: catalog, Policy: pol, Metrics: g.metrics, Log: log, Ready: g.ready.Load,
		SigningKeys: keys, Sealer: sealer, Audit: g.audit, ConfigPolicies: cfg.Policies, Approvals: approvals,
		OIDC: idps, Terminator: rec, Connector: conn, UI: ui.Handler()}
	srv.SSHCA = sshCA(g.engines["ssh"])
	srv.Listeners = func() map[string]string {
		m := map[string]string{}
		for name := range g.addrs {
			if a := g.Addr(name); a != "" {
				m[name] = a
			}
		}
		if a := g.Addr("agents"); a != "" {
			m["agents"] = a
		}
		return m
	}
	for _, der := range cert.Certificate {
		srv.TLSCertificate = append(srv.TLSCertificate, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if g.agents != nil {
		srv.Agents = g.agents
	}
	g.apiServer = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ok = true
	return g, nil
}

// identities builds the auth service: config users, the bootstrap admin, the token key.
func (g *Gateway) identities(out io.Writer) (*auth.Service, error) {
	ctx := context.Background()
	key, err := g.store.GetKV(ctx, "auth/token_key")
	if errors.Is(err, store.ErrNotFound) {
		key = make([]byte, 32)
		rand.Read(key)
		err = g.store.PutKV(ctx, "auth/token_key", key)
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	var users []auth.User
	hasAdmin := false
	for _, u := range g.cfg.Users {
		hash := u.PasswordHash
		if hash == "" {
			if hash, err = auth.HashPassword(u.Password); err != nil {
				return nil, err
			}
		}
		role, err := auth.ParseRole(u.Role)
		if err != nil {
			return nil, fmt.Errorf("config: user %q: %w", u.Name, err)
		}
		if _, err := auth.ParseSSHKeys(u.SSHKeys); err != nil {
			return nil, fmt.Errorf("config: user %q: %w", u.Name, err)
		}
		users = append(users, auth.User{Name: u.Name, PasswordHash: hash, Role: role, Groups: u.Groups, SSHKeys: u.SSHKeys})
		hasAdmin = hasAdmin || u.Name == "admin"
	}
	if !hasAdmin {
		hash, err := g.bootstrapAdmin(ctx, out)
		if err != nil {
			return nil, err
		}
		users = append(users, auth.User{Name: "admin", PasswordHash: hash, Role: auth.RoleAdmin})
	}
	svc, err := auth.NewService(key, users)
	if err != nil {
		return nil, err
	}
	svc.TokenTTL = g.cfg.Auth.TokenTTL
	svc.Store = g.store
	return svc, nil
}

// bootstrapAdmin returns the local admin's password hash: from AIRLOCK_ADMIN_PASSWORD (or
// auth.admin_password) when set, else the one stored on first start, else a new random password
// that is printed once.
func (g *Gateway) bootstrapAdmin(ctx context.Context, out io.Writer) (string, error) {
	const k = "auth/admin_password_hash"
	pw := os.Getenv("AIRLOCK_ADMIN_PASSWORD")
	if pw == "" {
		pw = g.cfg.Auth.AdminPassword
	}
	if pw != "" {
		hash, err := auth.HashPassword(pw)
		if err != nil {
			return "", err
		}
		return hash, g.store.PutKV(ctx, k, []byte(hash))
	}
	stored, err := g.store.GetKV(ctx, k)
	if err == nil {
		return string(stored), nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	b := make([]byte, 18)
	rand.Read(b)
	pw = base64.RawURLEncoding.EncodeToString(b)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return "", err
	}
	if err := g.store.PutKV(ctx, k, []byte(hash)); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "\n  Airlock created the local administrator.\n    user:     admin\n    password: %s\n  It is shown this once; set AIRLOCK_ADMIN_PASSWORD to choose it instead.\n\n", pw)
	return hash, nil
}

// Start opens the listeners and serves them in the background.
func (g *Gateway) Start() error {
	for name := range g.engines {
		ln, err := net.Listen("tcp", g.addrs[name])
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("listen %s on %s: %w", name, g.addrs[name], err)
		}
		g.listeners[name] = ln
	}
	ln, err := net.Listen("tcp", g.cfg.Listen.API)
	if err != nil {
		g.closeListeners()
		return fmt.Errorf("listen api on %s: %w", g.cfg.Listen.API, err)
	}
	g.listeners["api"] = ln
	for name, ln := range g.listeners {
		g.log.Info("listening", "listener", name, "addr", ln.Addr().String())
		if name == "api" {
			g.serveGroup.Add(1)
			go func() {
				defer g.serveGroup.Done()
				if err := g.apiServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					g.log.Error("api server stopped", "err", err)
				}
			}()
			continue
		}
		g.serveGroup.Add(1)
		go g.acceptLoop(ln, g.engines[name])
	}
	if g.agents != nil {
		aln, err := net.Listen("tcp", g.cfg.Listen.Agents)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("listen agents on %s: %w", g.cfg.Listen.Agents, err)
		}
		// Join tokens carry agents.advertise, else listen.agents (with port 0, the port bound).
		g.agents.Addr = agent.TokenAddr(g.cfg.Agents.Advertise, g.cfg.Listen.Agents, aln.Addr().String())
		if err := agent.Dialable(g.agents.Addr); err != nil {
			g.log.Warn("agents: `airlock agents create` will refuse to make join tokens", "err", err)
		}
		g.listeners["agents"] = aln
		g.log.Info("listening", "listener", "agents", "addr", aln.Addr().String())
		g.serveGroup.Add(1)
		go func() { defer g.serveGroup.Done(); g.agents.Serve(aln) }()
	}
	if addr := g.cfg.Listen.Debug; addr != "" {
		dln, err := net.Listen("tcp", addr)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("listen debug on %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		g.log.Warn("serving pprof profiles", "addr", dln.Addr().String())
		go http.Serve(dln, mux)
	}
	// After crash recovery (New): a session left running by the previous process is ended by
	// now, and only ended sessions expire.
	g.retention.Start()
	g.ready.Store(true)
	return nil
}

// Addr returns the bound address of a listener ("api", "postgres", "mysql", "ssh", "agents"),
// or "".
func (g *Gateway) Addr(name string) string {
	if ln := g.listeners[name]; ln != nil {
		return ln.Addr().String()
	}
	return ""
}

func (g *Gateway) acceptLoop(ln net.Listener, e engine.Engine) {
	defer g.serveGroup.Done()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.Warn("accept failed", "listener", e.Name(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		g.sessions.Add(1)
		go g.serveConn(conn, e)
	}
}

func (g *Gateway) serveConn(conn net.Conn, e engine.Engine) {
	defer g.sessions.Done()
	defer conn.Close()
	defer func() {
		if p := recover(); p != nil {
			g.metrics.Error("panic")
			g.log.Error("session handler panicked", "protocol", e.Name(), "client", conn.RemoteAddr().String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	if g.sessCtx.Err() != nil {
		e.Refuse(conn, engine.ErrShutdown)
		return
	}
	// Its own context, so that an administrator can end this session alone (api terminate ->
	// Recorder.Terminate).
	ctx, cancel := context.WithCancelCause(g.sessCtx)
	defer cancel(nil)
	if err := e.Serve(recorder.WithTerminate(ctx, cancel), conn); err != nil {
		g.log.Warn("session error", "protocol", e.Name(), "err", err)
	}
}

func (g *Gateway) closeListeners() {
	for name, ln := range g.listeners {
		if name != "api" {
			ln.Close()
		}
	}
}

// Shutdown stops in stages: stop accepting, let sessions finish until drain is done (or
// cfg.ShutdownGrace passes), then end the rest with a message to their clients, close their
// recordings and the store. Cancelling force skips the wait.
func (g *Gateway) Shutdown(force <-chan struct{}) error {
	g.ready.Store(false)
	g.closeListeners()
	g.log.Info("shutting down: no new sessions; waiting for running ones", "grace", g.cfg.ShutdownGrace.String())
	drained := make(chan struct{})
	go func() { g.sessions.Wait(); close(drained) }()
	timer := time.NewTimer(g.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		g.log.Warn("grace period over: ending the remaining sessions")
	case <-force:
		g.log.Warn("second signal: ending every session now")
	}
	g.endAll(engine.ErrShutdown)
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		g.log.Error("sessions did not end within 10s of being told to; closing the store under them")
	case <-force:
	}
	if g.agents != nil {
		g.agents.Close() // after the sessions: the tunnels carried them
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.apiServer.Shutdown(ctx)
	g.serveGroup.Wait()
	g.retention.Stop()
	// Its own deadline: the API's may be spent by now.
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if err := g.audit.Record(actx, audit.Entry{Action: audit.ActionGatewayStop, Actor: audit.User, Outcome: audit.OK}); err != nil {
		g.log.Error("audit log: recording the stop failed", "err", err)
	}
	if err := g.audit.End(actx); err != nil {
		g.log.Error("audit log: ending it failed; the next start closes it as interrupted", "err", err)
	}
	err := g.store.Close()
	g.log.Info("stopped")
	return err
}

// lateAudit hands engines the audit log, which is opened after they are built (and before any
// listener accepts).
type lateAudit struct{ g *Gateway }

func (a lateAudit) Record(ctx context.Context, e audit.Entry) error {
	if a.g.audit == nil {
		return errors.New("audit log not open")
	}
	return a.g.audit.Record(ctx, e)
}

// kvConfigDigest holds the configuration digest of the last start (configDigest).
const kvConfigDigest = "gateway/config_sha256"

// configDigest is the SHA-256 (hex) of the effective configuration, defaults and environment
// overrides applied, as YAML: what gateway.start and config.change audit entries name.
func configDigest(cfg *config.Config) string {
	b, err := yaml.Marshal(cfg)
	if err != nil { // the config package's own types; cannot happen
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// auditConfigChange writes a config.change entry when the gateway starts with another
// configuration than the last start against this store (edits to the file between runs, or
// another file), then remembers the new digest. The first start records none: gateway.start
// names the digest.
func auditConfigChange(ctx context.Context, st store.KV, log *audit.Log, file, digest string) error {
	prev, err := st.GetKV(ctx, kvConfigDigest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return st.PutKV(ctx, kvConfigDigest, []byte(digest))
	case err != nil:
		return fmt.Errorf("read the last configuration digest: %w", err)
	case string(prev) == digest:
		return nil
	}
	if err := log.Record(ctx, audit.Entry{Action: audit.ActionConfigChange, Actor: audit.User, Outcome: audit.OK,
		Detail: map[string]string{"config_file": file, "previous_sha256": string(prev), "config_sha256": digest}}); err != nil {
		return err
	}
	return st.PutKV(ctx, kvConfigDigest, []byte(digest))
}
