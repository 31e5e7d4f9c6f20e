package agent

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// memKV is a store.KV in memory.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) GetKV(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (k *memKV) PutKV(_ context.Context, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[key] = v
	return nil
}

func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// sqlStateErr is a handshake error with a protocol code, like pgconn's *PgError.
type sqlStateErr struct{ code string }

func (e sqlStateErr) Error() string    { return "refused with " + e.code }
func (e sqlStateErr) SQLState() string { return e.code }

func init() {
	// The test protocol: the handshake sends the request line and expects "ok <req>" back;
	// its state is the line. A request "refuse" fails with a SQLSTATE.
	connector.RegisterHandshake("agent-test", func(ctx context.Context, tg target.Target, dial connector.DialFunc, req []byte) (net.Conn, []byte, error) {
		if string(req) == "refuse" {
			return nil, nil, sqlStateErr{"28P01"}
		}
		c, err := dial(ctx)
		if err != nil {
			return nil, nil, err
		}
		c.Write(append(req, '\n'))
		line := make([]byte, 0, 64)
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				c.Close()
				return nil, nil, err
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		return c, line, nil
	})
}

// echoTarget answers a handshake line with "ok LINE", then echoes.
func echoTarget(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				io.WriteString(c, "ok "+line)
				io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

type fixture struct {
	hub    *Hub
	kv     *memKV
	target string
}

func newFixture(t *testing.T) *fixture { return newBenchFixture(t) }

func newBenchFixture(t testing.TB) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith lets edit change the hub before it serves.
func newFixtureWith(t testing.TB, edit func(*Hub)) *fixture {
	t.Helper()
	f := &fixture{kv: &memKV{}, target: echoTarget(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.hub = &Hub{Registry: &Registry{KV: f.kv}, Cert: testCert(t), Addr: ln.Addr().String()}
	if edit != nil {
		edit(f.hub)
	}
	go f.hub.Serve(ln)
	t.Cleanup(f.hub.Close)
	return f
}

type runningAgent struct {
	cancel context.CancelFunc
	force  chan struct{}
	done   chan error
	up     chan struct{} // a receive for each tunnel the gateway accepted
}

func (f *fixture) start(t testing.TB, token string) *runningAgent { return f.startWith(t, token, nil) }

// startWith starts an agent (edit, when set, changes it first) and waits for its tunnel.
func (f *fixture) startWith(t testing.TB, token string, edit func(*Agent)) *runningAgent {
	t.Helper()
	tok, err := ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{}, 8)
	a := &Agent{Token: tok, Version: "test", MaxBackoff: 50 * time.Millisecond, Heartbeat: 20 * time.Millisecond,
		Targets:   map[string]target.Target{"echo": {Name: "echo", Type: "agent-test", Address: f.target, Password: "agent-secret"}},
		Connected: func() { up <- struct{}{} }}
	if edit != nil {
		edit(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{cancel: cancel, force: make(chan struct{}), done: make(chan error, 1), up: up}
	go func() { r.done <- a.Run(ctx, r.force) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		default:
			close(r.force)
			<-r.done
		}
	})
	select {
	case <-up:
	case err := <-r.done:
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("agent not connected after 10s")
	}
	return r
}

func (f *fixture) create(t testing.TB, name string) string {
	t.Helper()
	_, tok, err := f.hub.Create(context.Background(), name, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var echoTgt = target.Target{Name: "echo", Type: "agent-test", Agent: "dc1-*"}

func roundTrip(c net.Conn, s string) (string, error) {
	if _, err := io.WriteString(c, s); err != nil {
		return "", err
	}
	b := make([]byte, len(s))
	_, err := io.ReadFull(c, b)
	return string(b), err
}

func TestTunnelSpreadsSessionsAndReportsLostAgents(t *testing.T) {
	f := newFixture(t)
	f.start(t, f.create(t, "dc1-a"))
	f.start(t, f.create(t, "dc1-b"))
	ctx := context.Background()
	if _, ok := f.hub.Announced("echo"); !ok {
		t.Fatal("echo not announced")
	}
	via := map[string][]*connector.Upstream{}
	for i := 0; i < 4; i++ {
		u, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if string(u.State) != "ok hello" {
			t.Fatalf("state %q", u.State)
		}
		via[u.Via] = append(via[u.Via], u)
	}
	if len(via["dc1-a"]) != 2 || len(via["dc1-b"]) != 2 {
		t.Fatalf("least loaded: sessions went %d to dc1-a and %d to dc1-b, want 2 each", len(via["dc1-a"]), len(via["dc1-b"]))
	}
	list, _ := f.hub.List(ctx)
	for _, in := range list {
		if !in.Connected || in.Sessions != 2 || in.Version != "test" || len(in.Targets) != 1 {
			t.Errorf("List: %+v", in)
		}
	}
	// Revoking dc1-a drops its tunnel: its sessions fail with a LostError saying so; dc1-b's
	// go on; the agent stops, refused.
	if _, err := f.hub.Revoke(ctx, "dc1-a", "test"); err != nil {
		t.Fatal(err)
	}
	for _, u := range via["dc1-a"] {
		_, err := roundTrip(u, "x")
		var lost *connector.LostError
		if !errors.As(err, &lost) || lost.Agent != "dc1-a" || lost.Reason != "revoked" {
			t.Errorf("session on the revoked agent: %v, want a LostError (revoked)", err)
		}
	}
	for _, u := range via["dc1-b"] {
		if got, err := roundTrip(u, "still here"); err != nil || got != "still here" {
			t.Errorf("session on dc1-b: %q, %v", got, err)
		}
	}
	u, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("again"))
	if err != nil || u.Via != "dc1-b" {
		t.Fatalf("after dc1-a's revocation: via %v, %v", u, err)
	}
	u.Close()
}

func TestAgentIsRefusedWithABadToken(t *testing.T) {
	f := newFixture(t)
	good, _ := ParseToken(f.create(t, "dc1-a"))
	for _, tc := range []struct {
		name string
		edit func(*Token)
		code string
	}{
		{"forged secret", func(k *Token) { k.Secret = "nope" }, "bad_secret"},
		{"unknown name", func(k *Token) { k.Name = "dc1-x" }, "unknown"},
		{"other pin", func(k *Token) { k.Pin = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, "pin_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := good
			tc.edit(&tok)
			a := &Agent{Token: tok, Targets: map[string]target.Target{}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := a.Run(ctx, nil)
			var refused *RefusedError
			if !errors.As(err, &refused) || refused.Code != tc.code {
				t.Fatalf("Run: %v, want refused with %s", err, tc.code)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	f := newFixture(t)
	f.start(t, f.create(t, "dc1-a"))
	ctx := context.Background()
	// The agent's handshake failed with a protocol code: the engine gets it.
	_, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("refuse"))
	var ae *connector.AgentError
	if !errors.As(err, &ae) || ae.Agent != "dc1-a" || ae.Code != "28P01" {
		t.Errorf("refused handshake: %v", err)
	}
	// No agent matches.
	_, err = f.hub.Open(ctx, target.Target{Name: "echo", Type: "agent-test", Agent: "dc2"}, "agent-test", nil)
	if !errors.Is(err, connector.ErrNoAgent) {
		t.Errorf("no agent: %v", err)
	}
	// A type the agent's target does not have.
	_, err = f.hub.Open(ctx, target.Target{Name: "echo", Type: "postgres", Agent: "*"}, "postgres", nil)
	if !errors.Is(err, connector.ErrNoAgent) {
		t.Errorf("wrong type: %v", err)
	}
	// A plain dial (PostgreSQL's cancel requests) reaches the target's address.
	c, err := f.hub.Dial(ctx, echoTgt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "raw\n")
	b := make([]byte, 7)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ok raw\n" {
		t.Errorf("dial: %q %v", b, err)
	}
}

func TestDrainKeepsRunningSessions(t *testing.T) {
	f := newFixture(t)
	r := f.start(t, f.create(t, "dc1-a"))
	ctx := context.Background()
	u, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	r.cancel() // SIGTERM
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, _ := f.hub.List(ctx)
		if l[0].Draining {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent not draining")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.hub.Open(ctx, echoTgt, "agent-test", []byte("y")); !errors.Is(err, connector.ErrNoAgent) {
		t.Errorf("new session on a draining agent: %v", err)
	}
	if got, err := roundTrip(u, "during drain"); err != nil || got != "during drain" {
		t.Errorf("running session during the drain: %q %v", got, err)
	}
	select {
	case err := <-r.done:
		t.Fatalf("agent stopped with a session running: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	u.Close()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run after drain: %v", err)
		}
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop after its last session")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{Name: "dc1-a", Addr: "gw.example:8443", Pin: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Secret: "s"}
	got, err := ParseToken(" " + tok.String() + "\n")
	if err != nil || got != tok {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"", "alk_x", "aljt1_", "aljt1_e30", tokenPrefix + strings.Repeat("A", 5000)} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%.20q) accepted", bad)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(Token{Name: "dc1-a", Addr: "gw:1", Pin: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Secret: "s"}.String())
	f.Add("aljt1_e30")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if again, err := ParseToken(tok.String()); err != nil || again != tok {
			t.Fatalf("round trip of %+v: %+v %v", tok, again, err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var buf strings.Builder
	writeFrame(&buf, openReq{Op: "open", Target: "t", Proto: "postgres", Req: []byte(`{}`)})
	f.Add([]byte(buf.String()))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req openReq
		readFrame(strings.NewReader(string(b)), &req)
		var h hello
		readFrame(strings.NewReader(string(b)), &h)
	})
}
