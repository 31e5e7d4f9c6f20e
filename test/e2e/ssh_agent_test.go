package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSSHAgent: SSH targets served by an agent. The agent's config holds the target's address,
// the login key and the pinned host key; the gateway's names only the targets and their agent.
// The stock ssh and scp, through the gateway and the agent: exec with its exit status, a pty,
// a file copied up and back; a target whose pinned host key (at the agent) is wrong is refused
// with the pin's message; the agent gone, the user is told.
func TestSSHAgent(t *testing.T) {
	requireBinary(t)
	requireSSHTools(t, "scp")
	st := startSSHTarget(t)
	users := defaultUsers()
	users[0].SSHKeys = []string{st.AlicePub}
	g := startGateway(t, gwConfig{Listeners: []string{"ssh"}, Users: users,
		AgentListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Targets:     []targetCfg{{Name: "web-a", Type: "ssh", Agent: "ssh-agent"}, {Name: "web-b", Type: "ssh", Agent: "ssh-agent"}},
		Extra: `policies:
  - name: ssh-alice
    subjects: ["user:alice"]
    targets: ["web-*"]
    access: allow
    ssh: [shell, exec, sftp]
`})
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	var y strings.Builder
	y.WriteString("targets:\n")
	for _, tg := range []struct{ name, hostKey string }{{"web-a", st.HostPub}, {"web-b", st.OtherPub}} {
		fmt.Fprintf(&y, "  - name: %s\n    type: ssh\n    address: %s\n    username: %s\n    private_key_file: %s\n    host_key: %s\n",
			tg.name, st.Addr(), yq(st.Login), yq(st.GatewayKy), yq(tg.hostKey))
	}
	if err := os.WriteFile(cfg, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	agentTok := g.createAgent(t, "ssh-agent")
	a := startAgent(t, "", "ssh-agent", agentTok, cfg)
	g.waitAgent(t, "ssh-agent", "connected", func(v agentView) bool { return v.Connected })
	c := newSSHClient(t, g)

	t.Run("exec", func(t *testing.T) {
		since := time.Now()
		r := c.ssh("alice:web-a", st.AliceKey, "echo hello from $(whoami); echo oops >&2; exit 3")
		if r.Code != 3 || r.Stdout != "hello from "+st.Login+"\n" || !strings.Contains(r.Stderr, "oops") {
			t.Fatalf("ssh exec through the agent: %s (want exit 3, the output and the remote stderr)", r)
		}
		_, ev := g.waitSSHSession(t, "alice", "web-a", since)
		params, _ := ev[0].Data["params"].(map[string]any)
		if ev[0].str("agent") != "ssh-agent" || ev[0].str("upstream") != "agent:ssh-agent" || !strings.HasPrefix(fmt.Sprint(params["upstream_version"]), "SSH-2.0-OpenSSH") || params["login"] != st.Login {
			t.Errorf("session.start = %v, want agent ssh-agent, the target's version and the login the agent used", ev[0].Data)
		}
		if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
			t.Errorf("recorded stdout %q != what the client saw %q", out, r.Stdout)
		}
		if e := terminalText(ev, "terminal.output", "stderr"); !strings.Contains(e, "oops") {
			t.Errorf("recorded stderr %q", e)
		}
		if ex := ofType(ev, "exec"); len(ex) != 1 || ex[0].str("login") != st.Login {
			t.Errorf("exec events = %+v, want one with the login the agent used", ex)
		}
		if exits := ofType(ev, "exec.exit"); len(exits) != 1 || exits[0].num("status") != 3 {
			t.Errorf("exec.exit events = %+v", exits)
		}
	})

	t.Run("pty", func(t *testing.T) {
		r := c.ssh("alice:web-a", st.AliceKey, "-tt", "tty; echo TERM=$TERM")
		if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") {
			t.Errorf("ssh -tt through the agent: %s (want a pty on the target)", r)
		}
	})

	t.Run("scp up and back", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "up.txt")
		body := strings.Repeat("through the agent\n", 5000)
		if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		rdir := t.TempDir() // on the target: sshd runs as the same user on this machine
		os.Chmod(rdir, 0o755)
		remote := filepath.Join(rdir, "up.txt")
		scp := func(args ...string) cmdResult {
			a := append(c.opts("", st.AliceKey), "-P", fmt.Sprint(c.port))
			return run(time.Minute, c.env(), nil, "scp", append(a, args...)...)
		}
		if r := scp(src, "alice+web-a@127.0.0.1:"+remote); r.Code != 0 { // scp parses user+target, not user:target
			t.Fatalf("scp up: %s", r)
		}
		if b, err := os.ReadFile(remote); err != nil || string(b) != body {
			t.Fatalf("the file on the target: %d bytes, %v (want %d)", len(b), err, len(body))
		}
		back := filepath.Join(dir, "back.txt")
		if r := scp("alice+web-a@127.0.0.1:"+remote, back); r.Code != 0 {
			t.Fatalf("scp back: %s", r)
		}
		if b, _ := os.ReadFile(back); string(b) != body {
			t.Errorf("the file copied back: %d bytes, want %d", len(b), len(body))
		}
	})

	t.Run("host key pinned at the agent", func(t *testing.T) {
		r := c.ssh("alice:web-b", st.AliceKey, "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "does not match the pinned one") {
			t.Errorf("ssh to a target whose pin at the agent is wrong: %s", r)
		}
	})

	t.Run("the gateway holds no credential for the target", func(t *testing.T) {
		key, _ := os.ReadFile(st.GatewayKy)
		if hits := filesContaining(t, g.dir, st.GatewayKy, strings.TrimSpace(string(key))); len(hits) > 0 {
			t.Errorf("the target's key is in the gateway's files: %v", hits)
		}
	})

	// The agent killed under a running command: the client is told, on stderr (exec) or on
	// the terminal (pty), that the target was lost with its agent, and the recording, whose
	// chain verifies, ends agent_lost.
	top := t
	for _, tc := range []struct{ name, flag string }{{"exec", "-T"}, {"pty", "-tt"}} {
		t.Run("agent killed mid-session: "+tc.name, func(t *testing.T) {
			since := time.Now()
			marker := uniq("ssh_lost")
			args := append(c.opts("alice:web-a", st.AliceKey), "-p", fmt.Sprint(c.port), tc.flag, "127.0.0.1", "echo "+marker+"; sleep 120")
			wait := startBackground(t, c.env(), "ssh", args...)
			id := g.waitRunningOutput(t, "alice", "web-a", since, marker)
			a.kill()
			r := wait()
			out := r.Stdout + r.Stderr
			if r.Code != 255 || !strings.Contains(r.Stdout, marker) ||
				!strings.Contains(out, "airlock: the connection to target web-a was lost with the agent serving it: the tunnel to agent ssh-agent was lost (disconnected)") {
				t.Errorf("ssh %s when its agent was killed: %s (want exit 255 and the gateway's message naming the agent)", tc.flag, r)
			}
			s, ev := g.waitSSHSessionSlack(t, "alice", "web-a", since, 0)
			if s.ID != id || s.EndReason != "agent_lost" || endReason(ev) != "agent_lost" || !strings.Contains(endEvent(ev).str("error"), "agent ssh-agent was lost") {
				t.Errorf("session %s ended %q / %q (%v), want agent_lost naming the agent", s.ID, s.EndReason, endReason(ev), endEvent(ev).Data)
			}
			g.verifyCLI(t, s.ID)
			a = startAgent(top, "", "ssh-agent", agentTok, cfg)
			g.waitAgent(t, "ssh-agent", "connected again", func(v agentView) bool { return v.Connected })
		})
	}

	t.Run("agent gone", func(t *testing.T) {
		a.kill()
		g.waitAgent(t, "ssh-agent", "disconnected", func(v agentView) bool { return !v.Connected })
		r := c.ssh("alice:web-a", st.AliceKey, "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no connected agent serves the target") {
			t.Errorf("ssh with the agent gone: %s", r)
		}
	})
}

// waitRunningOutput waits (30s) for the one running ssh session of user on target that started
// after since to have recorded marker as output, and returns its id.
func (g *gateway) waitRunningOutput(t testing.TB, user, target string, since time.Time, marker string) string {
	t.Helper()
	tok := g.adminToken(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range g.sessions(t, tok, sessionFilter{User: user, Target: target}) {
			if s.StartedAt.Before(since.Add(-time.Second)) || s.ended() {
				continue
			}
			if strings.Contains(terminalText(g.events(t, tok, s.ID), "terminal.output", ""), marker) {
				return s.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: no running session of %s on %s has output %q", user, target, marker)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verifyCLI checks a recording with `airlock verify ID` through the gateway.
func (g *gateway) verifyCLI(t testing.TB, id string) {
	t.Helper()
	env := append(cleanEnv(), "HOME="+t.TempDir(), "AIRLOCK_GATEWAY="+g.apiURL(), "AIRLOCK_TOKEN="+g.adminToken(t))
	if r := run(time.Minute, env, nil, airlockBin, "verify", id); r.Code != 0 {
		t.Errorf("airlock verify %s: %s", id, r)
	}
}
