package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// Agent is the agent's side of the tunnel: it dials out to the gateway, announces its targets
// and serves the sessions the gateway opens, with its own credentials for the targets.
type Agent struct {
	Token Token
	// Gateway overrides the token's gateway address (host:port), e.g. when listen.agents is a
	// wildcard address. Default: Token.Addr.
	Gateway string
	Targets map[string]target.Target // by name; each with its address and credentials
	Version string
	Log     *slog.Logger // discards when nil
	// Grace is how long a shutdown lets running sessions finish. Default 30s.
	Grace time.Duration
	// Heartbeat is how often the agent reports to the gateway; KeepAlive the tunnel's ping
	// interval; a tunnel that cannot write, or whose ping is unanswered, for WriteTimeout is
	// lost. Defaults 5s, 10s and 10s.
	Heartbeat, KeepAlive, WriteTimeout time.Duration
	// MaxBackoff bounds the wait between reconnection attempts. Default 30s.
	MaxBackoff time.Duration
	// Connected, when set, is called each time a tunnel is accepted (tests, readiness).
	Connected func()

	active   sync.WaitGroup
	sessions atomic.Int64

	// Tests: the clock, the jitter's random source (rand.N), the wait between attempts (false
	// when ctx ended first), and a call between the start of a drain and the gateway's notice.
	now          func() time.Time
	randN        func(n int64) int64
	sleep        func(ctx context.Context, d time.Duration) bool
	beforeNotice func()
}

// RefusedError is the gateway's refusal of the agent's token: retrying cannot help.
type RefusedError struct {
	Code, Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the gateway refused this agent (%s): %s", e.Code, e.Message)
}

func (a *Agent) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (a *Agent) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func (a *Agent) wait(ctx context.Context, d time.Duration) bool {
	if a.sleep != nil {
		return a.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reconnection: the backoff doubles from minBackoff up to MaxBackoff, and starts over after a
// tunnel that was up for resetAfter.
const (
	minBackoff = 500 * time.Millisecond
	resetAfter = time.Minute
)

// nextWait returns the next backoff after prev, and the wait it gives: equal jitter, between
// half the backoff and all of it, so that agents that lost the gateway together do not come
// back together.
func (a *Agent) nextWait(prev time.Duration) (backoff, wait time.Duration) {
	backoff = min(max(2*prev, minBackoff), cmp(a.MaxBackoff, 30*time.Second))
	randN := a.randN
	if randN == nil {
		randN = rand.N[int64]
	}
	return backoff, backoff/2 + time.Duration(randN(int64(backoff/2)+1))
}

func (a *Agent) addr() string {
	if a.Gateway != "" {
		return a.Gateway
	}
	return a.Token.Addr
}

// Run keeps a tunnel to the gateway, reconnecting with backoff and jitter, until ctx is done;
// then it drains: the gateway sends it no new session, and running ones get Grace to finish
// (force, when closed, ends them at once). It returns nil after a drain, or a *RefusedError
// when the gateway refuses the token.
func (a *Agent) Run(ctx context.Context, force <-chan struct{}) error {
	var backoff, wait time.Duration
	for {
		start := a.clock()
		err := a.connect(ctx, force)
		var refused *RefusedError
		if errors.As(err, &refused) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if a.clock().Sub(start) > resetAfter {
			backoff = 0 // it was up for a while: a fresh failure starts over
		}
		backoff, wait = a.nextWait(backoff)
		a.log().Warn("tunnel to the gateway down; reconnecting", "gateway", a.addr(), "err", err, "retry_in", wait.Round(time.Millisecond))
		if !a.wait(ctx, wait) {
			return nil
		}
	}
}

// connect runs one tunnel until it fails or ctx is done (then drains it).
func (a *Agent) connect(ctx context.Context, force <-chan struct{}) error {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", a.addr())
	if err != nil {
		return err
	}
	want, _ := base64.RawURLEncoding.DecodeString(a.Token.Pin)
	tc := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The pin replaces the CA check: the gateway's certificate is usually self-signed,
		// and a pin is stronger than any CA for this one peer.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the gateway sent no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			if subtle.ConstantTimeCompare(sum[:], want) != 1 {
				return &RefusedError{Code: "pin_mismatch", Message: "the gateway's TLS key is not the one the join token pins (wrong address, or an interception)"}
			}
			return nil
		},
	})
	tc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		var refused *RefusedError
		if errors.As(err, &refused) {
			return refused
		}
		return fmt.Errorf("TLS to the gateway: %w", err)
	}
	cfg := yamux.DefaultConfig()
	cfg.KeepAliveInterval = cmp(a.KeepAlive, 10*time.Second)
	cfg.ConnectionWriteTimeout = cmp(a.WriteTimeout, 10*time.Second)
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(&coalescer{Conn: tc}, cfg)
	if err != nil {
		tc.Close()
		return err
	}
	defer sess.Close()
	ctl, err := sess.OpenStream()
	if err != nil {
		return err
	}
	hi := hello{Name: a.Token.Name, Secret: a.Token.Secret, Version: a.Version}
	for _, t := range a.Targets {
		hi.Targets = append(hi.Targets, Announced{Name: t.Name, Type: t.Type, Labels: t.Labels, Impersonate: t.Impersonate})
	}
	sort.Slice(hi.Targets, func(i, j int) bool { return hi.Targets[i].Name < hi.Targets[j].Name })
	var w welcome
	if err := writeFrame(ctl, hi); err != nil {
		return err
	}
	if err := readFrame(ctl, &w); err != nil {
		return fmt.Errorf("no answer to the hello: %w", err)
	}
	if !w.OK {
		if w.Code == "error" {
			return errors.New("the gateway could not accept the tunnel: " + w.Error)
		}
		return &RefusedError{Code: w.Code, Message: w.Error}
	}
	tc.SetDeadline(time.Time{})
	a.log().Info("tunnel to the gateway up", "gateway", a.addr(), "targets", len(hi.Targets))
	if a.Connected != nil {
		a.Connected()
	}

	var ctlMu sync.Mutex
	send := func(m control) error {
		ctlMu.Lock()
		defer ctlMu.Unlock()
		ctl.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return writeFrame(ctl, m)
	}
	// The gateway's own frames on the control stream: none but its close.
	go func() { io.Copy(io.Discard, ctl); sess.Close() }()
	go func() {
		tick := time.NewTicker(cmp(a.Heartbeat, 5*time.Second))
		defer tick.Stop()
		for {
			select {
			case <-sess.CloseChan():
				return
			case <-tick.C:
				if send(control{Type: "heartbeat", Sessions: a.sessions.Load()}) != nil {
					return
				}
			}
		}
	}()

	var draining atomic.Bool
	accepted := make(chan error, 1)
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				accepted <- err
				return
			}
			a.active.Add(1)
			a.sessions.Add(1)
			go func() {
				defer a.active.Done()
				defer a.sessions.Add(-1)
				a.serveStream(ctx, st, draining.Load())
			}()
		}
	}()
	select {
	case err := <-accepted:
		return fmt.Errorf("tunnel lost: %w", err)
	case <-ctx.Done():
	}
	// Drain: the gateway stops choosing this agent; running sessions get the grace period.
	draining.Store(true)
	if a.beforeNotice != nil {
		a.beforeNotice()
	}
	send(control{Type: "drain", Sessions: a.sessions.Load()})
	grace := cmp(a.Grace, 30*time.Second)
	a.log().Info("draining: no new sessions; waiting for running ones", "sessions", a.sessions.Load(), "grace", grace)
	done := make(chan struct{})
	go func() { a.active.Wait(); close(done) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		a.log().Warn("grace period over: ending the remaining sessions", "sessions", a.sessions.Load())
	case <-force:
		a.log().Warn("second signal: ending every session now", "sessions", a.sessions.Load())
	}
	send(control{Type: "bye"})
	return nil
}

// serveStream serves one stream the gateway opened: the request, the target's handshake or
// dial, then the bytes both ways.
func (a *Agent) serveStream(ctx context.Context, st *yamux.Stream, draining bool) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(30 * time.Second))
	var req openReq
	if err := readFrame(st, &req); err != nil {
		a.log().Warn("unreadable request from the gateway", "err", err)
		return
	}
	fail := func(code string, err error) {
		writeFrame(st, openResp{Error: err.Error(), Code: code})
	}
	log := a.log().With("target", req.Target, "op", req.Op)
	t, ok := a.Targets[req.Target]
	switch {
	case draining:
		writeFrame(st, openResp{Error: "the agent is shutting down", Refused: refusedDraining})
		return
	case !ok:
		fail("", fmt.Errorf("this agent serves no target %q", req.Target))
		return
	case req.Op == "open" && req.Proto != t.Type:
		fail("", fmt.Errorf("target %q is a %s target on this agent, not %s", t.Name, t.Type, req.Proto))
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var up net.Conn
	var state []byte
	switch req.Op {
	case "open":
		u, err := connector.OpenWith(hctx, t, req.Proto, req.Req, func(ctx context.Context) (net.Conn, error) {
			return connector.Direct{}.Dial(ctx, t)
		})
		if err != nil {
			log.Warn("handshake with the target failed", "err", err)
			fail(errCode(err), err)
			return
		}
		up, state = u.Conn, u.State
	case "dial":
		c, err := connector.Direct{}.Dial(hctx, t)
		if err != nil {
			fail("", err)
			return
		}
		up = c
	default:
		fail("", fmt.Errorf("unknown request %q", req.Op))
		return
	}
	defer up.Close()
	if err := writeFrame(st, openResp{OK: true, State: state}); err != nil {
		return
	}
	st.SetDeadline(time.Time{})
	log.Debug("session open")
	splice(st, up)
}

// errCode is the protocol's error code of a handshake failure, when it has one (pgconn's
// *PgError has SQLState; other protocols wrap theirs in a connector.CodedError).
func errCode(err error) string {
	var c interface{ ProtocolCode() string }
	if errors.As(err, &c) {
		return c.ProtocolCode()
	}
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// splice copies both ways until either side ends, then closes both.
func splice(st *yamux.Stream, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() { // target -> gateway
		io.Copy(st, up)
		done <- struct{}{}
	}()
	go func() { // gateway -> target
		io.Copy(up, st)
		done <- struct{}{}
	}()
	<-done
	st.Close()
	up.Close()
	<-done
}
