package e2e

// The agent's test bed: a network namespace joined to the host by a veth pair, a private
// PostgreSQL inside it listening on the namespace's own loopback, and `airlock agent` processes
// started inside it. Nothing in the host's namespace, the gateway included, has a route to
// that loopback: what reaches the target can only have gone through an agent.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// privatePGPort is where the namespace's PostgreSQL listens (on the namespace's 127.0.0.1);
// nothing listens on it in the host's namespace, where the tests check that it is unreachable.
const privatePGPort = 55432

type privateNet struct {
	ns, hostIf     string
	hostIP, nsIP   string
	pgDir, pgBin   string
	pgPassword     string
	pgPasswordFile string // readable by the agent (root), not by the gateway's config
}

var netSeq atomic.Int32

// requireNetns skips (fails in CI) unless the test can make network namespaces and run a
// private PostgreSQL: root, iproute2, PostgreSQL's server binaries and its system user.
func requireNetns(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "the agent tests make a network namespace and need root")
	}
	requireTool(t, "ip")
	requireTool(t, "runuser")
	requireTool(t, "psql")
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		missing(t, "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) not found")
	}
	slices.Sort(bins)
	if _, err := user.Lookup("postgres"); err != nil {
		missing(t, "no postgres system user to run the private PostgreSQL as")
	}
	return filepath.Dir(bins[len(bins)-1])
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	r := run(2*time.Minute, os.Environ(), nil, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r.Stdout
}

// newPrivateNet makes the namespace and its veth pair, and starts the private PostgreSQL in it
// with a password only the agent's config holds.
func newPrivateNet(t testing.TB) *privateNet {
	t.Helper()
	bin := requireNetns(t)
	n := int(netSeq.Add(1))
	pid := os.Getpid() % 100000
	p := &privateNet{
		ns:     fmt.Sprintf("airlock-e2e-%d-%d", pid, n),
		hostIf: fmt.Sprintf("alh%dx%d", pid, n),
		hostIP: fmt.Sprintf("10.213.%d.%d", pid%250, 4*n+1),
		nsIP:   fmt.Sprintf("10.213.%d.%d", pid%250, 4*n+2),
		pgBin:  bin,
	}
	nsIf := fmt.Sprintf("aln%dx%d", pid, n)
	if r := run(time.Minute, os.Environ(), nil, "ip", "netns", "add", p.ns); r.Code != 0 {
		missing(t, "ip netns add: %s", r)
	}
	t.Cleanup(func() { run(time.Minute, os.Environ(), nil, "ip", "netns", "del", p.ns) })
	mustRun(t, "ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { run(time.Minute, os.Environ(), nil, "ip", "link", "del", p.hostIf) })
	mustRun(t, "ip", "link", "set", nsIf, "netns", p.ns)
	mustRun(t, "ip", "addr", "add", p.hostIP+"/30", "dev", p.hostIf)
	mustRun(t, "ip", "link", "set", p.hostIf, "up")
	mustRun(t, "ip", "netns", "exec", p.ns, "ip", "addr", "add", p.nsIP+"/30", "dev", nsIf)
	mustRun(t, "ip", "netns", "exec", p.ns, "ip", "link", "set", nsIf, "up")
	mustRun(t, "ip", "netns", "exec", p.ns, "ip", "link", "set", "lo", "up")
	p.startPostgres(t)
	return p
}

func (p *privateNet) startPostgres(t testing.TB) {
	t.Helper()
	pgUser, _ := user.Lookup("postgres")
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir, err := os.MkdirTemp("", "airlock-e2e-netns-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.pgDir = dir
	os.Chmod(dir, 0o755)
	os.Chown(dir, uid, gid)
	p.pgPassword = fmt.Sprintf("agent-only-Pw-%d", time.Now().UnixNano())
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(p.pgPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(pw, uid, gid)
	p.pgPasswordFile = pw
	t.Cleanup(func() {
		run(time.Minute, os.Environ(), nil, "runuser", "-u", "postgres", "--", filepath.Join(p.pgBin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop")
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("private PostgreSQL kept at %s (log %s/pg.log)", dir, dir)
		}
	})
	mustRun(t, "runuser", "-u", "postgres", "--", filepath.Join(p.pgBin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth=scram-sha-256", "--pwfile="+pw, "-E", "UTF8", "--no-sync", "--no-instructions")
	mustRun(t, "ip", "netns", "exec", p.ns, "runuser", "-u", "postgres", "--", filepath.Join(p.pgBin, "pg_ctl"), "-D", filepath.Join(dir, "data"),
		"-l", filepath.Join(dir, "pg.log"), "-w", "-t", "120", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", privatePGPort, dir), "start")
	p.psqlInside(t, "postgres", "create database private")
	p.psqlInside(t, "private", "create table marker(v text); insert into marker values ('inside-the-namespace')")
}

// psqlInside runs SQL on the private PostgreSQL from inside the namespace.
func (p *privateNet) psqlInside(t testing.TB, db, sql string) string {
	t.Helper()
	return mustRun(t, "ip", "netns", "exec", p.ns, "env", "PGPASSWORD="+p.pgPassword, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(privatePGPort), "-U", "postgres", "-d", db, "-c", sql)
}

// agentConfig writes an agent.yaml serving the private PostgreSQL as target name.
func (p *privateNet) agentConfig(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	y := fmt.Sprintf(`log: {level: debug, format: json}
shutdown_grace: 30s
targets:
  - name: %s
    type: postgres
    address: 127.0.0.1:%d
    username: postgres
    password_file: %s
    database: private
    tls: prefer
`, name, privatePGPort, p.pgPasswordFile)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentProc is an `airlock agent` process running in the namespace.
type agentProc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	logPath string
}

// startAgent runs `airlock agent --token TOKEN --config CFG` inside the namespace (ip netns exec
// execs it: the process is the agent's).
func (p *privateNet) startAgent(t testing.TB, name, token, cfg string) *agentProc {
	t.Helper()
	return startAgent(t, p.ns, name, token, cfg)
}

// startAgent runs an agent in network namespace ns, or in the test's own when ns is "".
func startAgent(t testing.TB, ns, name, token, cfg string) *agentProc {
	t.Helper()
	a := &agentProc{name: name, done: make(chan struct{}), logPath: filepath.Join(t.TempDir(), name+".log")}
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(airlockBin, "agent", "--token", token, "--config", cfg)
	if ns != "" {
		a.cmd = exec.Command("ip", "netns", "exec", ns, airlockBin, "agent", "--token", token, "--config", cfg)
	}
	a.cmd.Env = cleanEnv()
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); logf.Close(); close(a.done) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			b, _ := os.ReadFile(a.logPath)
			t.Logf("agent %s log:\n%s", name, clip(string(b), 6000))
		}
	})
	return a
}

func (a *agentProc) kill() {
	select {
	case <-a.done:
	default:
		a.cmd.Process.Kill()
		<-a.done
	}
}

// wait waits up to d for the agent to exit and returns its exit code (-1: still running).
func (a *agentProc) wait(d time.Duration) int {
	select {
	case <-a.done:
		return a.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

func (a *agentProc) log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

func (a *agentProc) signal(sig syscall.Signal) { a.cmd.Process.Signal(sig) }

type agentView struct {
	Name        string    `json:"name"`
	Connected   bool      `json:"connected"`
	Connections int       `json:"connections"`
	Version     string    `json:"version"`
	Targets     []string  `json:"targets"`
	Sessions    int64     `json:"sessions"`
	LastSeen    time.Time `json:"last_seen"`
	RevokedAt   time.Time `json:"revoked_at"`
	Draining    bool      `json:"draining"`
}

func (g *gateway) agents(t testing.TB) map[string]agentView {
	t.Helper()
	code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/agents", nil)
	if code != 200 {
		t.Fatalf("GET /api/v1/agents: HTTP %d: %s", code, body)
	}
	var r struct {
		Agents []agentView `json:"agents"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	out := map[string]agentView{}
	for _, a := range r.Agents {
		out[a.Name] = a
	}
	return out
}

// waitAgent polls the API until agent name satisfies ok (30s).
func (g *gateway) waitAgent(t testing.TB, name, what string, ok func(agentView) bool) agentView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := g.agents(t)[name]
		if ok(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s: not %s after 30s: %+v", name, what, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createAgent registers an agent through the API and returns its join token.
func (g *gateway) createAgent(t testing.TB, name string) string {
	t.Helper()
	code, body := g.api(t, g.adminToken(t), "POST", "/api/v1/agents", map[string]string{"name": name})
	if code != 201 {
		t.Fatalf("create agent %s: HTTP %d: %s", name, code, body)
	}
	var r struct {
		Token string `json:"token"`
	}
	json.Unmarshal(body, &r)
	return r.Token
}

// startBackground starts a client command and returns a function that waits for it (up to a
// minute) and returns its result.
func startBackground(t testing.TB, env []string, name string, args ...string) func() cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan cmdResult, 1)
	go func() {
		err := cmd.Wait()
		r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
		if cmd.ProcessState != nil {
			r.Code = cmd.ProcessState.ExitCode()
		}
		cancel()
		done <- r
	}()
	t.Cleanup(func() { cancel() })
	return func() cmdResult {
		select {
		case r := <-done:
			return r
		case <-time.After(time.Minute):
			cancel()
			return <-done
		}
	}
}
