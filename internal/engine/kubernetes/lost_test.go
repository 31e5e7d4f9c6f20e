package kubernetes

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/target"
)

// cutStream is a gateway's stream to an agent that takes a request, answers with head (maybe
// nothing), and is then lost: reads fail as an agent-carried connection's do once its tunnel
// is gone.
type cutStream struct {
	head  io.Reader
	wrote chan struct{}
	once  sync.Once
}

func (c *cutStream) Read(b []byte) (int, error) {
	<-c.wrote // nothing comes before the request (the transport would drop the connection)
	if n, _ := c.head.Read(b); n > 0 {
		return n, nil
	}
	return 0, &connector.LostError{Agent: "dc1-a", Reason: "disconnected"}
}

func (c *cutStream) Write(b []byte) (int, error) {
	c.once.Do(func() { close(c.wrote) })
	return len(b), nil
}

func (c *cutStream) Close() error                     { return nil }
func (c *cutStream) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *cutStream) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *cutStream) SetDeadline(time.Time) error      { return nil }
func (c *cutStream) SetReadDeadline(time.Time) error  { return nil }
func (c *cutStream) SetWriteDeadline(time.Time) error { return nil }

// TestAgentLostRequest: a request whose agent is lost before its answer, or in the middle of
// its body, gets a 503 Status naming the target and the agent, and its session ends
// agent_lost (connector.LostError, as internal/agent's streams return it).
func TestAgentLostRequest(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"before the answer", ""},
		{"in the body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\":"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := filestore.Open(t.TempDir(), filestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			tg := target.Target{Name: "kind-x", Type: Name, Agent: "dc1-*"}
			e := New(engine.Deps{Connector: connector.Direct{}})
			up := newAgentUpstream(tg, func(context.Context, target.Target, string, []byte) (*connector.Upstream, error) {
				return &connector.Upstream{Conn: &cutStream{head: strings.NewReader(tc.head), wrote: make(chan struct{})}, Via: "dc1-a"}, nil
			})
			rec, err := (&recorder.Recorder{Store: st}).Start(ctx, recorder.Info{Protocol: Name, Target: tg.Name, User: "alice",
				Start: event.SessionStartData{User: "alice", Target: tg.Name, TargetType: Name}})
			if err != nil {
				t.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			s := &session{eng: e, t: tg, rec: rec, up: up, log: slog.New(slog.DiscardHandler), ctx: sctx, cancel: cancel}
			w := httptest.NewRecorder()
			s.serve(nil, w, httptest.NewRequest("GET", "/k8s/kind-x/api/v1/pods", nil), "/api/v1/pods")
			want := "airlock: the connection to target kind-x was lost with the agent serving it: the tunnel to agent dc1-a was lost (disconnected)"
			if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), want) || !strings.Contains(w.Body.String(), `"kind":"Status"`) {
				t.Errorf("answer %d %s, want 503 and a Status saying %q", w.Code, w.Body, want)
			}
			c := &clientConn{e: e, ctx: ctx, sessions: map[sessionKey]*session{{"alice", tg.Name}: s}}
			c.endSessions("client_disconnected", nil)
			ss, err := st.Sessions(ctx, store.Filter{})
			if err != nil || len(ss) != 1 {
				t.Fatalf("sessions: %v, %v", ss, err)
			}
			if ss[0].EndReason != "agent_lost" {
				t.Errorf("session ended %q, want agent_lost", ss[0].EndReason)
			}
		})
	}
}
