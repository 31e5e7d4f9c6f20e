package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// Auditor is what the hub needs of the audit log.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry) error
}

// Hub is the gateway's side of the agents' tunnels: it accepts them on listen.agents, knows
// which targets each connected agent serves, and is the gateway's Connector: a target with an
// agent goes through one of them (the least loaded), any other is dialled directly.
type Hub struct {
	Registry *Registry
	Cert     tls.Certificate // the gateway's certificate, pinned by join tokens
	// Addr is the agent address written into join tokens (TokenAddr). Create refuses to make
	// a token when it is not an address agents can dial (empty, a wildcard host, port 0).
	Addr   string
	Direct connector.Direct
	Audit  Auditor      // nil: nothing audited
	Log    *slog.Logger // discards when nil
	// KeepAlive is the interval of the tunnel's keepalive pings; a tunnel that misses them for
	// WriteTimeout is lost. Defaults 10s and 10s.
	KeepAlive, WriteTimeout time.Duration
	// Recheck is how often a connected agent's registration is read again (at its heartbeats),
	// so that a revocation made by another gateway sharing the store drops the tunnel here too.
	// Default 15s.
	Recheck time.Duration

	// afterVerify, when set, is called after a tunnel's token is verified (tests).
	afterVerify func(name string)

	mu     sync.Mutex
	links  map[*link]struct{}
	ln     net.Listener
	closed bool
	wg     sync.WaitGroup
}

// link is one connected tunnel.
type link struct {
	name, version, remote string
	secretHash            string // of the registration it authenticated with
	targets               map[string]Announced
	sess                  *yamux.Session
	connectedAt           time.Time
	lastSeen              atomic.Int64 // unix nanoseconds
	sessions              atomic.Int64 // open streams the gateway uses
	draining              atomic.Bool
	reason                atomic.Pointer[string] // why it is lost, once it is
}

func (l *link) lostReason() string {
	if r := l.reason.Load(); r != nil {
		return *r
	}
	return "disconnected"
}

// drop ends the tunnel, giving reason to the sessions it carried.
func (l *link) drop(reason string) {
	l.reason.CompareAndSwap(nil, &reason)
	l.sess.Close()
}

func (h *Hub) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (h *Hub) muxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.KeepAliveInterval = cmp(h.KeepAlive, 10*time.Second)
	c.ConnectionWriteTimeout = cmp(h.WriteTimeout, 10*time.Second)
	c.StreamOpenTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Pin is the pin of the hub's certificate, as join tokens carry it.
func (h *Hub) Pin() (string, error) {
	if len(h.Cert.Certificate) == 0 {
		return "", errors.New("agents: the gateway has no TLS certificate")
	}
	return Pin(h.Cert.Certificate[0])
}

// Serve accepts agents' tunnels on ln until Close.
func (h *Hub) Serve(ln net.Listener) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return
	}
	h.ln = ln
	if h.links == nil {
		h.links = map[*link]struct{}{}
	}
	h.mu.Unlock()
	tcfg := &tls.Config{Certificates: []tls.Certificate{h.Cert}, MinVersion: tls.VersionTLS13}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			h.log().Warn("agents: accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.serveTunnel(tls.Server(c, tcfg))
		}()
	}
}

// serveTunnel authenticates one agent's tunnel and serves its control stream until it ends.
func (h *Hub) serveTunnel(c *tls.Conn) {
	defer c.Close()
	remote := c.RemoteAddr().String()
	log := h.log().With("remote", remote)
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := c.Handshake(); err != nil {
		log.Debug("agents: TLS handshake failed", "err", err)
		return
	}
	sess, err := yamux.Server(&coalescer{Conn: c}, h.muxConfig())
	if err != nil {
		return
	}
	defer sess.Close()
	ctl, err := sess.AcceptStream()
	if err != nil {
		log.Debug("agents: no control stream", "err", err)
		return
	}
	var hi hello
	if err := readFrame(ctl, &hi); err != nil {
		log.Info("agents: tunnel refused: unreadable hello", "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	ctx := context.Background()
	// refuse tells the agent why its tunnel is refused (written to the connection when this
	// returns: yamux waits for its send loop, so the agent reads it before the close).
	refuse := func(code string, err error) {
		log.Warn("agents: tunnel refused", "agent", hi.Name, "err", err)
		h.audit(audit.Entry{Action: audit.ActionAgentConnect, Actor: hi.Name, Outcome: audit.Denied, Subject: hi.Name, Client: remote,
			Detail: map[string]string{"reason": code, "version": hi.Version}})
		if code == "" {
			code = "error"
			err = errors.New("the gateway could not check the token")
		}
		writeFrame(ctl, welcome{Error: err.Error(), Code: code})
	}
	rec, code, err := h.Registry.Verify(ctx, hi.Name, hi.Secret)
	if err != nil {
		refuse(code, err)
		return
	}
	if h.afterVerify != nil {
		h.afterVerify(hi.Name)
	}
	l := &link{name: hi.Name, version: hi.Version, remote: remote, secretHash: rec.SecretHash, sess: sess, connectedAt: time.Now(), targets: map[string]Announced{}}
	var names []string
	for _, t := range hi.Targets {
		if t.Name == "" || t.Type == "" {
			continue
		}
		l.targets[t.Name] = t
		names = append(names, t.Name)
	}
	sort.Strings(names)
	l.lastSeen.Store(time.Now().UnixNano())
	if err := h.audit(audit.Entry{Action: audit.ActionAgentConnect, Actor: hi.Name, Outcome: audit.OK, Subject: hi.Name, Client: remote,
		Detail: map[string]string{"version": hi.Version, "targets": fmt.Sprint(names)}}); err != nil {
		writeFrame(ctl, welcome{Error: "the gateway's audit log cannot be written", Code: "error"})
		return
	}
	// The link is served before the agent hears it is accepted: an agent that reports itself
	// connected is one the gateway routes sessions to.
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.links[l] = struct{}{}
	h.mu.Unlock()
	// A revocation between the check above and now found no link to drop: check again, now
	// that the link is where Drop looks (a revocation after this check drops it).
	if _, code, err := h.Registry.Verify(ctx, hi.Name, hi.Secret); err != nil {
		reason := "revoked"
		if code != "revoked" {
			reason = "refused"
		}
		l.reason.CompareAndSwap(nil, &reason)
		h.mu.Lock()
		delete(h.links, l)
		h.mu.Unlock()
		refuse(code, err)
		return
	}
	h.saveSeen(l, names)
	log = log.With("agent", l.name)
	defer func() {
		h.mu.Lock()
		delete(h.links, l)
		h.mu.Unlock()
		l.drop("disconnected")
		l.lastSeen.Store(time.Now().UnixNano())
		h.saveSeen(l, names)
		log.Warn("agent tunnel closed", "reason", l.lostReason(), "sessions", l.sessions.Load())
	}()
	if err := writeFrame(ctl, welcome{OK: true}); err != nil {
		return
	}
	log.Info("agent connected", "version", l.version, "targets", names)
	recheck := h.Recheck
	if recheck <= 0 {
		recheck = 15 * time.Second
	}
	checked := time.Now()
	for {
		var m control
		if err := readFrame(ctl, &m); err != nil {
			return
		}
		l.lastSeen.Store(time.Now().UnixNano())
		if time.Since(checked) >= recheck {
			// Revoked elsewhere (another gateway on the same store, or the store edited)?
			// A store that cannot answer now keeps the tunnel: only a refusal drops it.
			checked = time.Now()
			vctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, code, err := h.Registry.Verify(vctx, hi.Name, hi.Secret)
			cancel()
			if err != nil && (code == "revoked" || code == "unknown" || code == "bad_secret") {
				log.Warn("agent's registration no longer admits it: tunnel dropped", "code", code, "err", err)
				l.drop("revoked")
				return
			}
		}
		switch m.Type {
		case "drain":
			l.draining.Store(true)
			log.Info("agent draining: no new sessions go to it", "sessions", l.sessions.Load())
		case "bye":
			l.drop("the agent shut down")
			return
		}
	}
}

// saveSeen stores l's version, targets and last seen in the registry, so that `airlock agents
// list` shows them after the tunnel is gone and after a restart of the gateway.
func (h *Hub) saveSeen(l *link, targets []string) {
	s := Seen{SecretHash: l.secretHash, At: time.Unix(0, l.lastSeen.Load()).UTC(), Version: l.version, Targets: targets}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Registry.SetSeen(ctx, l.name, s); err != nil {
		h.log().Warn("agents: could not store the agent's last seen", "agent", l.name, "err", err)
	}
}

func (h *Hub) audit(e audit.Entry) error {
	if h.Audit == nil {
		return nil
	}
	err := h.Audit.Record(context.Background(), e)
	if err != nil {
		h.log().Error("agents: the audit log cannot be written", "action", e.Action, "err", err)
	}
	return err
}

// Close stops accepting tunnels and drops the connected ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	if h.ln != nil {
		h.ln.Close()
	}
	links := h.snapshot()
	h.mu.Unlock()
	for _, l := range links {
		l.drop("the gateway shut down")
	}
	h.wg.Wait()
}

func (h *Hub) snapshot() []*link {
	out := make([]*link, 0, len(h.links))
	for l := range h.links {
		out = append(out, l)
	}
	return out
}

// Drop ends every tunnel of the agent name (after its revocation).
func (h *Hub) Drop(name, reason string) int {
	h.mu.Lock()
	var ls []*link
	for l := range h.links {
		if l.name == name {
			ls = append(ls, l)
		}
	}
	h.mu.Unlock()
	for _, l := range ls {
		l.drop(reason)
	}
	return len(ls)
}

// candidates returns the live tunnels that serve t, least loaded first (ties in random order,
// so that equal agents share the load).
func (h *Hub) candidates(t target.Target) []*link {
	h.mu.Lock()
	var out []*link
	for l := range h.links {
		a, ok := l.targets[t.Name]
		if !ok || (t.Type != "" && a.Type != t.Type) || l.draining.Load() || l.sess.IsClosed() {
			continue
		}
		if t.Agent != "*" {
			if ok, _ := path.Match(t.Agent, l.name); !ok {
				continue
			}
		}
		out = append(out, l)
	}
	h.mu.Unlock()
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b *link) int { return int(a.sessions.Load() - b.sessions.Load()) })
	return out
}

// Dial implements connector.Connector.
func (h *Hub) Dial(ctx context.Context, t target.Target) (net.Conn, error) {
	if t.Agent == "" {
		return h.Direct.Dial(ctx, t)
	}
	u, err := h.open(ctx, t, openReq{Op: "dial", Target: t.Name})
	if err != nil {
		return nil, err
	}
	return u.Conn, nil
}

// Open implements connector.Connector: for an agent's target, the handshake runs on the agent.
func (h *Hub) Open(ctx context.Context, t target.Target, proto string, req []byte) (*connector.Upstream, error) {
	if t.Agent == "" {
		return h.Direct.Open(ctx, t, proto, req)
	}
	return h.open(ctx, t, openReq{Op: "open", Target: t.Name, Proto: proto, Req: req})
}

func (h *Hub) open(ctx context.Context, t target.Target, req openReq) (*connector.Upstream, error) {
	cands := h.candidates(t)
	if len(cands) == 0 {
		who := "any agent"
		if t.Agent != "*" {
			who = "agent " + t.Agent
		}
		return nil, &connector.AgentError{Err: fmt.Errorf("%w: %s (%s)", connector.ErrNoAgent, t.Name, who)}
	}
	var lastErr error
	for _, l := range cands {
		u, err, retry := h.openOn(ctx, l, req)
		if err == nil {
			return u, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break // the agent answered about the target: its answer stands
		}
		h.log().Warn("agents: could not open a session on this agent; trying another", "agent", l.name, "target", t.Name, "err", err)
	}
	return nil, lastErr
}

// openOn opens req on l. retry reports that another agent may do: the tunnel failed, or the
// agent refused the stream because it is draining (l is then marked draining); any other
// refusal is the agent's answer about the target.
func (h *Hub) openOn(ctx context.Context, l *link, req openReq) (*connector.Upstream, error, bool) {
	l.sessions.Add(1)
	release := sync.OnceFunc(func() { l.sessions.Add(-1) })
	st, err := l.sess.OpenStream()
	if err != nil {
		release()
		return nil, &connector.AgentError{Agent: l.name, Err: fmt.Errorf("open a stream: %w", err)}, true
	}
	dl := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	st.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	var resp openResp
	err = writeFrame(st, req)
	if err == nil {
		err = readFrame(st, &resp)
	}
	stop()
	if err != nil {
		st.Close()
		release()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &connector.AgentError{Agent: l.name, Err: fmt.Errorf("tunnel: %w", err)}, true
	}
	if !resp.OK {
		st.Close()
		release()
		if resp.Refused == refusedDraining {
			// The agent started draining before the gateway read its drain notice.
			if !l.draining.Swap(true) {
				h.log().Info("agent draining (it refused a session): no new sessions go to it", "agent", l.name)
			}
			return nil, &connector.AgentError{Agent: l.name, Err: fmt.Errorf("%w: agent %s is shutting down", connector.ErrNoAgent, l.name)}, true
		}
		return nil, &connector.AgentError{Agent: l.name, Code: resp.Code, Err: errors.New(resp.Error)}, false
	}
	st.SetDeadline(time.Time{})
	return &connector.Upstream{Conn: &tunnelConn{Stream: st, l: l, release: release}, State: resp.State, Via: l.name}, nil, false
}

// tunnelConn is a session's stream: once its tunnel is gone, reads and writes fail with a
// *connector.LostError, so that the engine tells its client and its recording why.
type tunnelConn struct {
	*yamux.Stream
	l       *link
	release func()
}

func (c *tunnelConn) lost(err error) error {
	if err != nil && c.l.sess.IsClosed() {
		return &connector.LostError{Agent: c.l.name, Reason: c.l.lostReason()}
	}
	return err
}

func (c *tunnelConn) Read(b []byte) (int, error) {
	n, err := c.Stream.Read(b)
	return n, c.lost(err)
}

func (c *tunnelConn) Write(b []byte) (int, error) {
	n, err := c.Stream.Write(b)
	return n, c.lost(err)
}

func (c *tunnelConn) Close() error {
	c.release()
	return c.Stream.Close()
}

// Announced implements target.Announcer: a target that a connected agent announces.
func (h *Hub) Announced(name string) (target.Target, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.links {
		if a, ok := l.targets[name]; ok && !l.sess.IsClosed() {
			return announcedTarget(a), true
		}
	}
	return target.Target{}, false
}

// AnnouncedList implements target.Announcer.
func (h *Hub) AnnouncedList() []target.Target {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []target.Target
	for l := range h.links {
		for n, a := range l.targets {
			if !seen[n] && !l.sess.IsClosed() {
				seen[n] = true
				out = append(out, announcedTarget(a))
			}
		}
	}
	return out
}

func announcedTarget(a Announced) target.Target {
	return target.Target{Name: a.Name, Type: a.Type, Labels: a.Labels, Impersonate: a.Impersonate, Agent: "*", Source: "agent"}
}

// Info is an agent as the API shows it: its registration and its live tunnels.
type Info struct {
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	RevokedBy   string    `json:"revoked_by,omitempty"`
	Connected   bool      `json:"connected"`
	Connections int       `json:"connections"` // tunnels open under this name
	Version     string    `json:"version,omitempty"`
	Targets     []string  `json:"targets"`
	Sessions    int64     `json:"sessions"` // sessions its tunnels carry now
	LastSeen    time.Time `json:"last_seen,omitzero"`
	Draining    bool      `json:"draining,omitempty"`
	Remotes     []string  `json:"remote_addrs,omitempty"`
}

// List returns every registered agent with its live state.
func (h *Hub) List(ctx context.Context) ([]Info, error) {
	recs, err := h.Registry.List(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	links := h.snapshot()
	h.mu.Unlock()
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		in := infoOf(r)
		// What was stored when its tunnel last connected or closed (this gateway or another
		// sharing the store, before a restart included); live tunnels below replace it.
		seen, ok, err := h.Registry.GetSeen(ctx, r)
		if err != nil {
			return nil, err
		}
		if ok {
			in.LastSeen, in.Version = seen.At, seen.Version
			in.Targets = append(in.Targets, seen.Targets...)
		}
		for _, l := range links {
			if l.name != r.Name || l.sess.IsClosed() {
				continue
			}
			if !in.Connected {
				in.Targets = in.Targets[:0]
			}
			in.Connected = true
			in.Connections++
			in.Version = l.version
			in.Sessions += l.sessions.Load()
			in.Draining = in.Draining || l.draining.Load()
			in.Remotes = append(in.Remotes, l.remote)
			if ls := time.Unix(0, l.lastSeen.Load()).UTC(); ls.After(in.LastSeen) {
				in.LastSeen = ls
			}
			for n := range l.targets {
				if !slices.Contains(in.Targets, n) {
					in.Targets = append(in.Targets, n)
				}
			}
		}
		sort.Strings(in.Targets)
		sort.Strings(in.Remotes)
		out = append(out, in)
	}
	return out, nil
}

func infoOf(r Record) Info {
	return Info{Name: r.Name, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, RevokedAt: r.RevokedAt, RevokedBy: r.RevokedBy, Targets: []string{}}
}

// ErrNoAddress is Create's error when the gateway has no address agents can dial.
var ErrNoAddress = errors.New("the gateway has no agent address to put in join tokens")

// TokenAddr is the address join tokens carry: advertise (agents.advertise) when set, else
// listen (listen.agents), or bound, the address the listener bound, when listen's port is 0.
func TokenAddr(advertise, listen, bound string) string {
	if advertise != "" {
		return advertise
	}
	if _, port, err := net.SplitHostPort(listen); err == nil && port == "0" && bound != "" {
		return bound
	}
	return listen
}

// Dialable reports why addr is no address for an agent to dial (nil when it is one).
func Dialable(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNoAddress, addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) || port == "0" {
		return fmt.Errorf("%w: listen.agents %s is a wildcard address, which agents cannot dial; "+
			"set agents.advertise (env AIRLOCK_AGENTS_ADVERTISE) in the gateway's config to the host:port agents reach it at, "+
			"e.g. gw.example.com:8443, and restart it", ErrNoAddress, addr)
	}
	return nil
}

// Create registers an agent and returns it with its join token, shown this once. It refuses,
// registering nothing, when the hub's Addr is not one agents can dial.
func (h *Hub) Create(ctx context.Context, name, by string) (Info, string, error) {
	if err := Dialable(h.Addr); err != nil {
		return Info{}, "", err
	}
	pin, err := h.Pin()
	if err != nil {
		return Info{}, "", err
	}
	secret, rec, err := h.Registry.Create(ctx, name, by)
	if err != nil {
		return Info{}, "", err
	}
	tok := Token{Name: name, Addr: h.Addr, Pin: pin, Secret: secret}
	return infoOf(rec), tok.String(), nil
}

// Revoke refuses name's token from now on and drops its tunnels at once: the sessions they
// carried end as agent_lost.
func (h *Hub) Revoke(ctx context.Context, name, by string) (Info, error) {
	rec, err := h.Registry.Revoke(ctx, name, by)
	if err != nil {
		return Info{}, err
	}
	if n := h.Drop(name, "revoked"); n > 0 {
		h.log().Warn("agent revoked: its tunnels were dropped", "agent", name, "tunnels", n, "by", by)
	}
	return infoOf(rec), nil
}
