package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// waitUp waits for the agent's next accepted tunnel.
func waitUp(t *testing.T, r *runningAgent, what string) {
	t.Helper()
	select {
	case <-r.up:
	case err := <-r.done:
		r.done <- err // for the cleanup
		t.Fatalf("%s: the agent stopped: %v", what, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no tunnel after 10s", what)
	}
}

func infoOfAgent(t *testing.T, h *Hub, name string) Info {
	t.Helper()
	list, err := h.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("no agent %s in %+v", name, list)
	return Info{}
}

// An agent that starts draining before the gateway has read its drain notice refuses the
// session with a code of its own: the gateway marks it draining and opens the session on
// another agent serving the target, instead of failing it.
func TestDrainingAgentsRefusalGoesToAnotherAgent(t *testing.T) {
	f := newFixture(t)
	f.start(t, f.create(t, "dc1-b"))
	ctx := context.Background()
	busy, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("b"))
	if err != nil || busy.Via != "dc1-b" {
		t.Fatalf("first session: %v %v", busy, err)
	}
	defer busy.Close()

	draining, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	a := f.startWith(t, f.create(t, "dc1-a"), func(a *Agent) {
		a.beforeNotice = func() { close(draining); <-release }
	})
	t.Cleanup(releaseOnce)
	a.cancel() // SIGTERM: dc1-a drains, and its notice waits for release
	select {
	case <-draining:
	case <-time.After(10 * time.Second):
		t.Fatal("dc1-a did not start draining")
	}
	// The gateway does not know yet: dc1-a has the fewest sessions, so it is asked first.
	u, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("c"))
	if err != nil {
		t.Fatalf("a session while dc1-a drains and dc1-b serves the target: %v", err)
	}
	defer u.Close()
	if u.Via != "dc1-b" || string(u.State) != "ok c" {
		t.Errorf("session via %s, state %q; want dc1-b, ok c", u.Via, u.State)
	}
	if got, err := roundTrip(u, "served"); err != nil || got != "served" {
		t.Errorf("session on dc1-b: %q %v", got, err)
	}
	if in := infoOfAgent(t, f.hub, "dc1-a"); !in.Draining {
		t.Errorf("dc1-a not marked draining after its refusal: %+v", in)
	}
}

// A draining agent's refusal, alone, fails the session as "no connected agent".
func TestDrainingRefusalWithNoOtherAgent(t *testing.T) {
	f := newFixture(t)
	draining, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	a := f.startWith(t, f.create(t, "dc1-a"), func(a *Agent) {
		a.beforeNotice = func() { close(draining); <-release }
	})
	t.Cleanup(releaseOnce)
	a.cancel()
	select {
	case <-draining:
	case <-time.After(10 * time.Second):
		t.Fatal("dc1-a did not start draining")
	}
	_, err := f.hub.Open(context.Background(), echoTgt, "agent-test", []byte("x"))
	var ae *connector.AgentError
	if !errors.Is(err, connector.ErrNoAgent) || !errors.As(err, &ae) || ae.Agent != "dc1-a" || ae.Code != "" {
		t.Errorf("the only agent draining: %v, want ErrNoAgent from dc1-a with no protocol code", err)
	}
}

// A revocation that lands between the token's check and the link's registration (where Drop
// finds nothing yet) must not leave the revoked agent with a tunnel.
func TestRevocationWhileATunnelConnects(t *testing.T) {
	var revokes atomic.Int32
	var f *fixture
	revoked := make(chan error, 1)
	f = newFixtureWith(t, func(h *Hub) {
		h.afterVerify = func(name string) {
			if revokes.Add(1) == 1 { // the first tunnel only
				_, err := h.Revoke(context.Background(), name, "test")
				revoked <- err
			}
		}
	})
	tok, err := ParseToken(f.create(t, "dc1-a"))
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{}, 1)
	a := &Agent{Token: tok, Version: "test", MaxBackoff: 50 * time.Millisecond,
		Targets:   map[string]target.Target{"echo": {Name: "echo", Type: "agent-test", Address: f.target}},
		Connected: func() { connected <- struct{}{} }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	select {
	case <-connected:
		t.Fatalf("the tunnel of an agent revoked while it connected was accepted: %+v", infoOfAgent(t, f.hub, "dc1-a"))
	case err := <-done:
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Code != "revoked" {
			t.Fatalf("Run: %v, want refused as revoked", err)
		}
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if in := infoOfAgent(t, f.hub, "dc1-a"); in.Connected || in.RevokedAt.IsZero() {
		t.Errorf("after the revocation: %+v", in)
	}
	if _, err := f.hub.Open(context.Background(), echoTgt, "agent-test", []byte("x")); !errors.Is(err, connector.ErrNoAgent) {
		t.Errorf("a session after the revocation: %v, want no agent", err)
	}
}

// The same agent process comes back after the gateway drops its tunnel, and after the gateway
// restarts on the same address, and serves again.
func TestAgentReconnects(t *testing.T) {
	f := newFixture(t)
	r := f.start(t, f.create(t, "dc1-a"))
	ctx := context.Background()
	serves := func(h *Hub, what string) {
		t.Helper()
		u, err := h.Open(ctx, echoTgt, "agent-test", []byte(what))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer u.Close()
		if got, err := roundTrip(u, what); err != nil || got != what || u.Via != "dc1-a" {
			t.Fatalf("%s: %q %v via %s", what, got, err, u.Via)
		}
	}
	serves(f.hub, "before")

	if n := f.hub.Drop("dc1-a", "test"); n != 1 {
		t.Fatalf("Drop: %d tunnels", n)
	}
	waitUp(t, r, "after Drop")
	serves(f.hub, "after-drop")

	addr, cert := f.hub.Addr, f.hub.Cert
	f.hub.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h2 := &Hub{Registry: &Registry{KV: f.kv}, Cert: cert, Addr: addr}
	go h2.Serve(ln)
	t.Cleanup(h2.Close)
	waitUp(t, r, "after the gateway's restart")
	serves(h2, "after-restart")
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("the agent stopped: %v", err)
	default:
	}
}

// blackhole is a TCP relay whose connections can be silenced at once: from then on their bytes
// go nowhere and neither side hears of a close, as with a dead NAT entry or a cut cable.
type blackhole struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []*atomic.Bool // per relayed connection: silenced
	closes []io.Closer
}

func newBlackhole(t *testing.T, to string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.closes {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			silenced := &atomic.Bool{}
			b.mu.Lock()
			b.conns = append(b.conns, silenced)
			b.closes = append(b.closes, c, up)
			b.mu.Unlock()
			relay := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						if !silenced.Load() {
							dst.Close()
						}
						return
					}
					if !silenced.Load() {
						dst.Write(buf[:n])
					}
				}
			}
			go relay(up, c)
			go relay(c, up)
		}
	}()
	return b
}

// silence black-holes every connection relayed so far; later ones are relayed.
func (b *blackhole) silence() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.conns {
		s.Store(true)
	}
}

// Keepalives: when the path to the gateway goes silent, both ends find the tunnel dead by its
// unanswered pings (no close ever arrives), the gateway stops using it, and the agent
// reconnects and serves again.
func TestKeepalivesFindASilentTunnel(t *testing.T) {
	f := newFixtureWith(t, func(h *Hub) { h.KeepAlive, h.WriteTimeout = 50*time.Millisecond, time.Second })
	bh := newBlackhole(t, f.hub.Addr)
	r := f.startWith(t, f.create(t, "dc1-a"), func(a *Agent) {
		a.Gateway = bh.ln.Addr().String()
		a.KeepAlive, a.WriteTimeout = 50*time.Millisecond, time.Second
		a.Heartbeat = time.Hour // only yamux's pings travel
	})
	ctx := context.Background()
	old, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("old"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	bh.silence()
	waitUp(t, r, "after the path went silent")
	// The gateway dropped the silent tunnel by itself: its session is lost, one tunnel is left.
	var lost *connector.LostError
	old.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := roundTrip(old, "x"); !errors.As(err, &lost) {
		t.Errorf("session on the silent tunnel: %v, want a LostError", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for in := infoOfAgent(t, f.hub, "dc1-a"); in.Connections != 1; in = infoOfAgent(t, f.hub, "dc1-a") {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway kept the silent tunnel: %+v", in)
		}
		time.Sleep(10 * time.Millisecond)
	}
	u, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, err := roundTrip(u, "again"); err != nil || got != "again" {
		t.Errorf("session on the new tunnel: %q %v", got, err)
	}
}

// The wait between reconnection attempts: a backoff doubling from 0.5s to MaxBackoff, with
// equal jitter (half the backoff plus a random part up to the other half), started over after
// a tunnel that was up for a minute.
func TestReconnectBackoff(t *testing.T) {
	// An address that refuses connections at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	run := func(t *testing.T, maxB, step time.Duration, attempts int, pick func(i int, n int64) int64) (waits []time.Duration, ns []int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		a := &Agent{Token: Token{Name: "dc1-a", Addr: addr}, MaxBackoff: maxB,
			now: func() time.Time { clock = clock.Add(step); return clock },
			randN: func(n int64) int64 {
				ns = append(ns, n)
				return pick(len(ns)-1, n)
			},
			sleep: func(ctx context.Context, d time.Duration) bool {
				waits = append(waits, d)
				if len(waits) == attempts {
					cancel()
					return false
				}
				return true
			}}
		if err := a.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if len(waits) != attempts {
			t.Fatalf("%d waits, want %d", len(waits), attempts)
		}
		return waits, ns
	}
	s := time.Second
	t.Run("doubling to the bound, jitter at both ends", func(t *testing.T) {
		backoffs := []time.Duration{s / 2, s, 2 * s, 4 * s, 8 * s, 10 * s, 10 * s, 10 * s}
		lowHigh := func(i int, n int64) int64 { // the least, then the most, the jitter can add
			if i%2 == 0 {
				return 0
			}
			return n - 1
		}
		waits, ns := run(t, 10*s, time.Millisecond, len(backoffs), lowHigh)
		for i, b := range backoffs {
			want := b / 2
			if i%2 == 1 {
				want = b
			}
			if ns[i] != int64(b/2)+1 || waits[i] != want {
				t.Errorf("attempt %d: rand.N(%d), wait %v; want rand.N(%d), wait %v (backoff %v)", i, ns[i], waits[i], int64(b/2)+1, want, b)
			}
		}
	})
	t.Run("default bound 30s", func(t *testing.T) {
		waits, _ := run(t, 0, time.Millisecond, 9, func(int, int64) int64 { return 0 })
		if got := slices.Max(waits); got != 15*s {
			t.Errorf("largest wait %v with no jitter, want 15s (half of the 30s bound): %v", got, waits)
		}
	})
	t.Run("starts over after a minute up", func(t *testing.T) {
		// Each attempt seems to last two minutes: the backoff never grows.
		waits, _ := run(t, 10*s, 2*time.Minute, 5, func(_ int, n int64) int64 { return n - 1 })
		for i, w := range waits {
			if w != s/2 {
				t.Errorf("attempt %d: wait %v, want 0.5s", i, w)
			}
		}
	})
}

// An agent's version, targets and last seen are stored in the registry when its tunnel
// connects and closes: a gateway started afresh on the same store still shows them, and a new
// registration of the name does not inherit them.
func TestStatusOutlivesTheGateway(t *testing.T) {
	f := newFixture(t)
	r := f.start(t, f.create(t, "dc1-a"))
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop")
	}
	// Its tunnel may close just after the agent's Run returns: wait for the gateway to see it.
	deadline := time.Now().Add(10 * time.Second)
	for infoOfAgent(t, f.hub, "dc1-a").Connected {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still has the agent's tunnel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.hub.Close()
	closedAt := time.Now()

	h2 := &Hub{Registry: &Registry{KV: f.kv}, Cert: f.hub.Cert, Addr: f.hub.Addr}
	in := infoOfAgent(t, h2, "dc1-a")
	if in.Connected || in.Version != "test" || !slices.Equal(in.Targets, []string{"echo"}) || in.LastSeen.IsZero() || in.LastSeen.After(closedAt) {
		t.Errorf("after a restart of the gateway: %+v; want disconnected, version test, targets [echo], last seen before %v", in, closedAt)
	}
	if _, err := h2.Revoke(context.Background(), "dc1-a", "test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h2.Create(context.Background(), "dc1-a", "test"); err != nil {
		t.Fatal(err)
	}
	if in := infoOfAgent(t, h2, "dc1-a"); in.Version != "" || len(in.Targets) != 0 || !in.LastSeen.IsZero() {
		t.Errorf("a new registration of the name: %+v; want never seen", in)
	}
}

// Create refuses to make a join token with an address agents cannot dial, and registers
// nothing then.
func TestCreateNeedsADialableAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8443", "[::]:8443", ":8443", ""} {
		h := &Hub{Registry: &Registry{KV: &memKV{}}, Cert: testCert(t), Addr: addr}
		_, tok, err := h.Create(context.Background(), "dc1-a", "test")
		if !errors.Is(err, ErrNoAddress) || tok != "" {
			t.Errorf("Addr %q: token %q, %v; want ErrNoAddress", addr, tok, err)
		}
		if addr != "" && !strings.Contains(err.Error(), "agents.advertise") {
			t.Errorf("Addr %q: %v does not tell to set agents.advertise", addr, err)
		}
		if recs, _ := h.Registry.List(context.Background()); len(recs) != 0 {
			t.Errorf("Addr %q: registered %+v", addr, recs)
		}
	}
	h := &Hub{Registry: &Registry{KV: &memKV{}}, Cert: testCert(t), Addr: TokenAddr("gw.example.com:8443", "0.0.0.0:8443", "")}
	_, s, err := h.Create(context.Background(), "dc1-a", "test")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := ParseToken(s); err != nil || tok.Addr != "gw.example.com:8443" {
		t.Errorf("token %+v %v; want the advertised address", tok, err)
	}
}

func TestTokenAddr(t *testing.T) {
	for _, c := range []struct{ advertise, listen, bound, want string }{
		{"gw.example.com:8443", "0.0.0.0:8443", "[::]:8443", "gw.example.com:8443"},
		{"gw.example.com:8443", "127.0.0.1:0", "127.0.0.1:4000", "gw.example.com:8443"},
		{"", "10.0.0.1:8443", "10.0.0.1:8443", "10.0.0.1:8443"},
		{"", "127.0.0.1:0", "127.0.0.1:4000", "127.0.0.1:4000"},
		{"", "127.0.0.1:0", "", "127.0.0.1:0"},
		{"", "0.0.0.0:8443", "[::]:8443", "0.0.0.0:8443"},
	} {
		if got := TokenAddr(c.advertise, c.listen, c.bound); got != c.want {
			t.Errorf("TokenAddr(%q, %q, %q) = %q, want %q", c.advertise, c.listen, c.bound, got, c.want)
		}
	}
}

// A revocation made through another gateway sharing the store drops the tunnel at the next
// registry check of this one (Hub.Recheck), not only at the agent's next reconnect.
func TestRevocationByAnotherGateway(t *testing.T) {
	f := newFixture(t) // gateway A: where the admin creates and revokes
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Hub{Registry: &Registry{KV: f.kv}, Cert: f.hub.Cert, Addr: ln.Addr().String(), Recheck: 50 * time.Millisecond}
	go b.Serve(ln)
	t.Cleanup(b.Close)
	tok := f.create(t, "dc1-a")
	r := f.startWith(t, tok, func(a *Agent) { a.Gateway = b.Addr }) // connected to gateway B
	if in := infoOfAgent(t, b, "dc1-a"); !in.Connected {
		t.Fatalf("not connected to gateway B: %+v", in)
	}
	if _, err := f.hub.Revoke(context.Background(), "dc1-a", "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err // for startWith's cleanup
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Code != "revoked" {
			t.Fatalf("Run: %v, want refused as revoked", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("gateway B kept the revoked agent's tunnel: %+v", infoOfAgent(t, b, "dc1-a"))
	}
	if _, err := b.Open(context.Background(), echoTgt, "agent-test", []byte("x")); !errors.Is(err, connector.ErrNoAgent) {
		t.Errorf("a session on gateway B after the revocation: %v, want no agent", err)
	}
}
