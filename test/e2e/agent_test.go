package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAgentPrivateNetwork drives psql through the gateway to a PostgreSQL that only agents can
// reach (agent_harness_test.go): the tunnel, its refusals, an agent killed mid-session and
// restarted, two agents with one killed, a drain on SIGTERM and a revocation. The steps share
// one namespace, gateway and set of agents, and run in order.
func TestAgentPrivateNetwork(t *testing.T) {
	p := newPrivateNet(t)
	top := t // agents outlive the step that starts them
	// The proof that the gateway cannot do the job itself: from this namespace (the gateway's)
	// the private PostgreSQL is reachable neither on loopback nor on the namespace's address.
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", privatePGPort), fmt.Sprintf("%s:%d", p.nsIP, privatePGPort)} {
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("%s is reachable from the gateway's namespace: the test proves nothing", addr)
		}
	}
	g := startGateway(t, gwConfig{
		AgentListen:    fmt.Sprintf("%s:%d", p.hostIP, freePort(t)),
		AllowPlaintext: true,
		Targets: []targetCfg{
			{Name: "pg", Address: pgAddr, Database: "test"},
			{Name: "private", Agent: "dc1-*"},
			{Name: "elsewhere", Agent: "dc9"},
		},
	})
	cfg := p.agentConfig(t, "private")
	home := t.TempDir()
	cli := append(cleanEnv(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config")
	if r := run(time.Minute, cli, strings.NewReader(adminPassword+"\n"), airlockBin, "login", "--gateway", g.apiURL(), "--user", "admin"); r.Code != 0 {
		t.Fatalf("airlock login: %s", r)
	}
	// airlock agents create NAME --json: the token carries the agent address, pin and secret.
	cr := run(time.Minute, cli, nil, airlockBin, "agents", "create", "dc1-a", "--json")
	if cr.Code != 0 {
		t.Fatalf("airlock agents create: %s", cr)
	}
	var created struct {
		Agent struct {
			Name string `json:"name"`
		} `json:"agent"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(cr.Stdout), &created); err != nil || created.Agent.Name != "dc1-a" {
		t.Fatalf("airlock agents create --json: %v: %s", err, cr)
	}
	tokA := created.Token
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tokA, "aljt1_"))
	var tokFields map[string]string
	if err != nil || json.Unmarshal(raw, &tokFields) != nil || tokFields["addr"] != g.agentAddr(t) || tokFields["pin"] == "" || tokFields["secret"] == "" {
		t.Fatalf("join token %q does not carry addr %s, pin and secret: %v", tokA, g.agentAddr(t), tokFields)
	}
	// Plain output: the token alone on stdout.
	cr2 := run(time.Minute, cli, nil, airlockBin, "agents", "create", "dc1-b")
	tokB := strings.TrimSpace(cr2.Stdout)
	if cr2.Code != 0 || !strings.HasPrefix(tokB, "aljt1_") || strings.Contains(tokB, "\n") {
		t.Fatalf("airlock agents create dc1-b: %s", cr2)
	}
	if again := run(time.Minute, cli, nil, airlockBin, "agents", "create", "dc1-a"); again.Code == 0 || !strings.Contains(again.Stderr, "already exists") {
		t.Errorf("a second dc1-a was created: %s", again)
	}

	agentA := p.startAgent(t, "dc1-a", tokA, cfg)
	g.waitAgent(t, "dc1-a", "connected", func(a agentView) bool { return a.Connected })
	env := func(app string) []string { return g.psqlEnv("alice", alicePassword, "private", app) }

	if !t.Run("psql reaches the private target through the agent", func(t *testing.T) {
		app := uniq("agent_psql")
		r := run(time.Minute, env(app), nil, "psql", "-X", "-At", "-c", "select v from marker", "-c", "select inet_server_addr()")
		if r.Code != 0 || !strings.Contains(r.Stdout, "inside-the-namespace") || !strings.Contains(r.Stdout, "127.0.0.1") {
			t.Fatalf("psql through the agent: %s", r)
		}
		s, ev := g.waitSession(t, app)
		start := ev[0]
		if start.str("agent") != "dc1-a" || start.str("upstream") != "agent:dc1-a" || s.EndReason != "client_terminated" {
			t.Errorf("session.start agent %q upstream %q, end %q; want dc1-a, agent:dc1-a, client_terminated", start.str("agent"), start.str("upstream"), s.EndReason)
		}
		mustQuery(t, ev, "select v from marker")
		// The target's credentials stayed with the agent: nowhere in the gateway's files.
		if hits := filesContaining(t, g.dir, p.pgPassword); len(hits) > 0 {
			t.Errorf("the target's password, held by the agent only, is in the gateway's files: %v", hits)
		}
		// And the user's password never reached the agent.
		if strings.Contains(agentA.log(), alicePassword) {
			t.Errorf("the user's password is in the agent's log")
		}
		a := g.agents(t)["dc1-a"]
		if !a.Connected || a.Version == "" || len(a.Targets) != 1 || a.Targets[0] != "private" || a.LastSeen.IsZero() {
			t.Errorf("GET /api/v1/agents: %+v", a)
		}
		ls := run(time.Minute, cli, nil, airlockBin, "agents", "list")
		if row := agentsListRow(ls.Stdout, "dc1-a"); ls.Code != 0 || len(row) != 6 || row[1] != "connected" || row[3] != "private" {
			t.Errorf("airlock agents list: dc1-a's row %q, want STATE connected and TARGETS private: %s", row, ls)
		}
		// A catalog lookup (psql's \d runs through the same tunnel).
		if r := run(time.Minute, env(uniq("agent_d")), nil, "psql", "-X", "-c", `\d marker`); r.Code != 0 || !strings.Contains(r.Stdout, "v") {
			t.Errorf(`psql \d through the agent: %s`, r)
		}
	}) {
		return
	}

	t.Run("refusals", func(t *testing.T) {
		// An unknown target, and a target whose agent is not connected.
		r := run(time.Minute, g.psqlEnv("alice", alicePassword, "nowhere", "x"), nil, "psql", "-X", "-c", "select 1")
		if r.Code == 0 || !strings.Contains(r.Stderr, `target "nowhere" does not exist`) {
			t.Errorf("unknown target: %s", r)
		}
		r = run(time.Minute, g.psqlEnv("alice", alicePassword, "elsewhere", "x"), nil, "psql", "-X", "-c", "select 1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no connected agent serves the target") || !strings.Contains(r.Stderr, "airlock agents list") {
			t.Errorf("target without a connected agent: %s", r)
		}
		// Bad tokens: a forged secret, a wrong pin, garbage. Each agent stops with a clear error.
		var f map[string]string
		raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tokA, "aljt1_"))
		json.Unmarshal(raw, &f)
		forge := func(k, v string) string {
			c := map[string]string{}
			for kk, vv := range f {
				c[kk] = vv
			}
			c[k] = v
			b, _ := json.Marshal(c)
			return "aljt1_" + base64.RawURLEncoding.EncodeToString(b)
		}
		for _, tc := range []struct{ name, token, want string }{
			{"forged secret", forge("secret", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "bad_secret"},
			{"unknown agent", forge("name", "dc1-zz"), "unknown"},
			{"wrong pin", forge("pin", base64.RawURLEncoding.EncodeToString(make([]byte, 32))), "pin_mismatch"},
			{"garbage", "aljt1_!!!", "agent join token"},
		} {
			a := p.startAgent(t, "bad-"+strings.ReplaceAll(tc.name, " ", "-"), tc.token, cfg)
			code := a.wait(30 * time.Second)
			if code != 1 || !strings.Contains(a.log(), tc.want) {
				t.Errorf("%s: agent exit %d (want 1), log lacks %q:\n%s", tc.name, code, tc.want, clip(a.log(), 2000))
			}
		}
		if a := g.agents(t)["dc1-a"]; a.Connections != 1 {
			t.Errorf("refused agents changed dc1-a: %+v", a)
		}
	})

	if !t.Run("agent killed mid-session, then restarted", func(t *testing.T) {
		app := uniq("agent_kill")
		wait := startBackground(t, env(app), "psql", "-X", "-At", "-c", "select pg_sleep(60)")
		g.waitAgent(t, "dc1-a", "carrying the session", func(a agentView) bool { return a.Sessions == 1 })
		g.waitSessions(t, app, 1, false)
		agentA.kill()
		r := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "connection to target private lost: the tunnel to agent dc1-a was lost") {
			t.Errorf("psql after its agent was killed: %s", r)
		}
		s, ev := g.waitSession(t, app)
		if s.EndReason != "agent_lost" || endReason(ev) != "agent_lost" {
			t.Errorf("end reason %q / %q, want agent_lost", s.EndReason, endReason(ev))
		}
		g.waitAgent(t, "dc1-a", "disconnected", func(a agentView) bool { return !a.Connected })
		r = run(time.Minute, env(uniq("agent_none")), nil, "psql", "-X", "-c", "select 1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no connected agent") {
			t.Errorf("psql with no agent: %s", r)
		}
		agentA = p.startAgent(top, "dc1-a", tokA, cfg)
		g.waitAgent(t, "dc1-a", "connected again", func(a agentView) bool { return a.Connected })
		if r := run(time.Minute, env(uniq("agent_back")), nil, "psql", "-X", "-At", "-c", "select v from marker"); r.Code != 0 || !strings.Contains(r.Stdout, "inside-the-namespace") {
			t.Errorf("psql after the agent came back: %s", r)
		}
	}) {
		return
	}

	if !t.Run("two agents, one killed", func(t *testing.T) {
		agentB := p.startAgent(top, "dc1-b", tokB, cfg)
		g.waitAgent(t, "dc1-b", "connected", func(a agentView) bool { return a.Connected })
		// Earlier sessions are released when the gateway has closed them, which may be just
		// after their clients exited.
		g.waitAgent(t, "dc1-a", "idle", func(a agentView) bool { return a.Sessions == 0 })
		ctx := context.Background()
		app := uniq("agent_ha")
		var conns []*pgx.Conn
		for i := 0; i < 4; i++ {
			c := g.connect(t, "alice", alicePassword, "private", app, "sslmode=disable")
			var pid int
			if err := c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Which agent carries which connection: the recordings say.
		ss := g.waitSessions(t, app, 4, false)
		byAgent := map[string]int{}
		for _, s := range ss {
			ev := g.events(t, g.adminToken(t), s.ID)
			byAgent[ev[0].str("agent")]++
		}
		// New sessions go to the least loaded agent: opened one after the other, 2 and 2.
		if byAgent["dc1-a"] != 2 || byAgent["dc1-b"] != 2 {
			t.Errorf("4 sessions spread over the agents as %v, want 2 each", byAgent)
		}
		agentA.kill()
		g.waitAgent(t, "dc1-a", "disconnected", func(a agentView) bool { return !a.Connected })
		lost, alive := 0, 0
		for _, c := range conns {
			var v string
			err := c.QueryRow(ctx, "select v from marker").Scan(&v)
			switch {
			case err == nil && v == "inside-the-namespace":
				alive++
			case err != nil && strings.Contains(err.Error(), "agent dc1-a was lost"):
				lost++
			default:
				t.Errorf("query after dc1-a was killed: %q, %v", v, err)
			}
		}
		if lost != 2 || alive != 2 {
			t.Errorf("after dc1-a was killed: %d sessions lost, %d alive; want 2 and 2", lost, alive)
		}
		for _, c := range conns {
			c.Close(ctx)
		}
		// New sessions go on through dc1-b.
		for i := 0; i < 3; i++ {
			app2 := uniq("agent_after")
			if r := run(time.Minute, env(app2), nil, "psql", "-X", "-At", "-c", "select v from marker"); r.Code != 0 {
				t.Fatalf("psql with dc1-a gone: %s", r)
			}
			if _, ev := g.waitSession(t, app2); ev[0].str("agent") != "dc1-b" {
				t.Errorf("session after dc1-a was killed went via %q", ev[0].str("agent"))
			}
		}
		ended := g.waitSessions(t, app, 4, true)
		reasons := map[string]int{}
		for _, s := range ended {
			reasons[s.EndReason]++
		}
		if reasons["agent_lost"] != 2 || reasons["client_terminated"] != 2 {
			t.Errorf("end reasons %v, want 2 agent_lost and 2 client_terminated", reasons)
		}
		agentB.kill()
		g.waitAgent(t, "dc1-b", "disconnected", func(a agentView) bool { return !a.Connected })
	}) {
		return
	}

	if !t.Run("drain on SIGTERM", func(t *testing.T) {
		agentA = p.startAgent(top, "dc1-a", tokA, cfg)
		g.waitAgent(t, "dc1-a", "connected", func(a agentView) bool { return a.Connected })
		ctx := context.Background()
		c := g.connect(t, "alice", alicePassword, "private", uniq("agent_drain"), "sslmode=disable")
		agentA.signal(syscall.SIGTERM)
		g.waitAgent(t, "dc1-a", "draining", func(a agentView) bool { return a.Draining })
		// The running session goes on; a new one is not sent to a draining agent.
		var v string
		if err := c.QueryRow(ctx, "select v from marker").Scan(&v); err != nil || v != "inside-the-namespace" {
			t.Errorf("query during the drain: %q, %v", v, err)
		}
		if r := run(time.Minute, env(uniq("agent_draining")), nil, "psql", "-X", "-c", "select 1"); r.Code == 0 || !strings.Contains(r.Stderr, "no connected agent") {
			t.Errorf("new session during the drain: %s", r)
		}
		if code := agentA.wait(time.Second); code != -1 {
			t.Fatalf("the agent exited (%d) with a session running", code)
		}
		c.Close(ctx)
		if code := agentA.wait(30 * time.Second); code != 0 {
			t.Errorf("agent exit %d after its last session ended, want 0:\n%s", code, clip(agentA.log(), 3000))
		}
	}) {
		return
	}

	t.Run("revoke", func(t *testing.T) {
		agentB := p.startAgent(top, "dc1-b", tokB, cfg)
		g.waitAgent(t, "dc1-b", "connected", func(a agentView) bool { return a.Connected })
		app := uniq("agent_revoke")
		wait := startBackground(t, env(app), "psql", "-X", "-At", "-c", "select pg_sleep(60)")
		g.waitAgent(t, "dc1-b", "carrying the session", func(a agentView) bool { return a.Sessions == 1 })
		g.waitSessions(t, app, 1, false)
		if r := run(time.Minute, cli, nil, airlockBin, "agents", "revoke", "dc1-b"); r.Code != 0 {
			t.Fatalf("airlock agents revoke: %s", r)
		}
		r := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "agent dc1-b was lost (revoked)") {
			t.Errorf("psql when its agent was revoked: %s", r)
		}
		if s, _ := g.waitSession(t, app); s.EndReason != "agent_lost" {
			t.Errorf("end reason %q, want agent_lost", s.EndReason)
		}
		if code := agentB.wait(30 * time.Second); code != 1 || !strings.Contains(agentB.log(), "revoked") {
			t.Errorf("revoked agent: exit %d, want 1 with a log saying revoked:\n%s", code, clip(agentB.log(), 3000))
		}
		a := g.agents(t)["dc1-b"]
		if a.Connected || a.RevokedAt.IsZero() {
			t.Errorf("dc1-b after revoke: %+v", a)
		}
		if ls := run(time.Minute, cli, nil, airlockBin, "agents", "list"); !strings.Contains(ls.Stdout, "revoked by admin") {
			t.Errorf("airlock agents list: %s", ls)
		}
		// The revocation is audited.
		if !g.auditHas(t, "agent.revoke", "admin", "dc1-b") || !g.auditHas(t, "agent.create", "admin", "dc1-a") {
			t.Errorf("agent.create / agent.revoke not in the audit log")
		}
	})
}

// agentsListRow returns the cells of name's row in `airlock agents list` (columns are at
// least two spaces apart; a cell has at most one), or nil.
func agentsListRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		var cells []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		if len(cells) > 0 && cells[0] == name {
			return cells
		}
	}
	return nil
}

// agentAddr is the gateway's listen.agents, read back from its config.
func (g *gateway) agentAddr(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "agents: "); ok {
			var s string
			json.Unmarshal([]byte(v), &s)
			return s
		}
	}
	t.Fatal("no listen.agents in the gateway's config")
	return ""
}

// TestAgentMySQL: a MySQL target served by an agent (here in the test's own namespace: the
// isolation is what TestAgentPrivateNetwork proves; this is the MySQL handshake on the agent
// and the end of a session whose agent is killed).
func TestAgentMySQL(t *testing.T) {
	requireMySQL(t)
	g := startMySQLGateway(t, gwConfig{
		AgentListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Targets:     []targetCfg{{Name: "myagent", Type: "mysql", Agent: "my-agent"}},
	})
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("targets:\n  - name: myagent\n    type: mysql\n    address: %s\n    database: test\n    username: root\n    password: \"\"\n", myAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "", "my-agent", g.createAgent(t, "my-agent"), cfg)
	g.waitAgent(t, "my-agent", "connected", func(a agentView) bool { return a.Connected })

	m := uniq("myagent")
	r := g.mariadb(t, "alice", alicePassword, "myagent", "-e", "select '"+m+"', database()")
	if r.Code != 0 || !strings.Contains(r.Stdout, m+"\ttest") {
		t.Fatalf("mariadb through the agent: %s", r)
	}
	s, ev := g.mySession(t, m)
	if ev[0].str("agent") != "my-agent" || ev[0].str("upstream") != "agent:my-agent" || s.EndReason != "client_terminated" {
		t.Errorf("session.start agent %q upstream %q, end %q", ev[0].str("agent"), ev[0].str("upstream"), s.EndReason)
	}

	// The target's own ERR from the agent's handshake reaches the client with its code.
	if r := g.mariadb(t, "alice", alicePassword, "myagent/no_such_db_here", "-e", "select 1"); r.Code == 0 ||
		!strings.HasPrefix(strings.TrimSpace(r.Stderr), "ERROR 1049 (42000)") || !strings.Contains(r.Stderr, "no_such_db_here") {
		t.Errorf("unknown database through the agent: %s (want the target's ERROR 1049)", r)
	}

	// The agent killed mid-session: the next statement gets an ERR saying so, and the
	// recording ends agent_lost.
	m2 := uniq("myagentlost")
	db := g.myOpen(t, "alice", alicePassword, "myagent", m2)
	var v string
	if err := db.QueryRow("select '" + m2 + "'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	a.kill()
	g.waitAgent(t, "my-agent", "disconnected", func(a agentView) bool { return !a.Connected })
	err := db.QueryRow("select 1").Scan(&v)
	if err == nil || !strings.Contains(err.Error(), "the tunnel to agent my-agent was lost") {
		t.Errorf("query after the agent was killed: %v", err)
	}
	db.Close()
	if s, _ := g.mySession(t, m2); s.EndReason != "agent_lost" {
		t.Errorf("end reason %q, want agent_lost", s.EndReason)
	}
}
