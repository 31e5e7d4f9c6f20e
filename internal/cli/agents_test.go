package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/agent"
	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/target"
)

// fakeAgents is api.Agents with a fixed list.
type fakeAgents struct{ list []agent.Info }

func (f fakeAgents) List(context.Context) ([]agent.Info, error) { return f.list, nil }
func (f fakeAgents) Create(context.Context, string, string) (agent.Info, string, error) {
	return agent.Info{}, "", agent.ErrNoAddress
}
func (f fakeAgents) Revoke(context.Context, string, string) (agent.Info, error) {
	return agent.Info{}, agent.ErrUnknown
}

func agentsHarness(t *testing.T, agents api.Agents) *harness {
	t.Helper()
	hash, _ := auth.HashPassword("pw")
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{{Name: "root", PasswordHash: hash, Role: auth.RoleAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	st := apitest.New()
	srv := &api.Server{Store: st, Auth: svc, Policy: &policy.Engine{}, Targets: &target.Catalog{Store: st}, Agents: agents}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return (&harness{srv: srv, url: ts.URL, st: st, auth: svc, vars: map[string]string{"XDG_CONFIG_HOME": t.TempDir()}}).as(t, "root")
}

func TestAgentsList(t *testing.T) {
	seen := time.Date(2026, 11, 26, 8, 31, 2, 0, time.UTC)
	h := agentsHarness(t, fakeAgents{list: []agent.Info{
		{Name: "dc1-a", Connected: true, Connections: 1, Version: "v1.2", Targets: []string{"billing-db", "web"}, Sessions: 3, LastSeen: seen},
		{Name: "dc1-b", Version: "v1.1", Targets: []string{"billing-db"}, LastSeen: seen}, // disconnected, as stored
		{Name: "dc1-c", Targets: []string{}}, // never connected
		{Name: "dc1-d", Connected: true, Connections: 2, Version: "v1.2", Targets: []string{"web"}, LastSeen: seen},
		{Name: "dc1-e", Connected: true, Connections: 1, Draining: true, Version: "v1.2", Targets: []string{"web"}, Sessions: 1, LastSeen: seen},
		{Name: "dc1-f", RevokedAt: seen, RevokedBy: "admin", Version: "v1.0", Targets: []string{"web"}, LastSeen: seen},
	}})
	code, out, errOut := h.run(t, runAgentsList)
	if code != 0 {
		t.Fatalf("agents list: %d %s %s", code, out, errOut)
	}
	at := seen.Local().Format("2006-01-02 15:04:05 MST")
	want := [][]string{
		{"NAME", "STATE", "VERSION", "TARGETS", "SESSIONS", "LAST SEEN"},
		{"dc1-a", "connected", "v1.2", "billing-db,web", "3", at},
		{"dc1-b", "disconnected", "v1.1", "billing-db", "0", at},
		{"dc1-c", "disconnected", "-", "-", "0", "never"},
		{"dc1-d", "connected (2 tunnels)", "v1.2", "web", "0", at},
		{"dc1-e", "draining", "v1.2", "web", "1", at},
		{"dc1-f", "revoked by admin", "v1.0", "web", "0", at},
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	// Columns are separated by at least two spaces (tabwriter); cells have at most one.
	for i, line := range lines {
		var cells []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		if strings.Join(cells, "|") != strings.Join(want[i], "|") {
			t.Errorf("line %d: %q, want %q", i, cells, want[i])
		}
	}
}

func TestAgentsCreateWithoutADialableAddress(t *testing.T) {
	kv := apitest.New()
	hub := &agent.Hub{Registry: &agent.Registry{KV: kv}, Addr: "0.0.0.0:8443"} // the address is checked before the certificate
	h := agentsHarness(t, hub)
	code, out, errOut := h.run(t, runAgentsCreate, "dc1-a")
	if code == 0 || out != "" || !strings.Contains(errOut, "agents.advertise") || !strings.Contains(errOut, "0.0.0.0:8443") {
		t.Fatalf("agents create with listen.agents 0.0.0.0:8443: %d %q %q", code, out, errOut)
	}
	if list, _ := hub.List(context.Background()); len(list) != 0 {
		t.Errorf("registered anyway: %+v", list)
	}
}
