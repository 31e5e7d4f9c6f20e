package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sshTarget is an OpenSSH server run by the test on a loopback port, with its own config, host
// keys and authorized_keys in a temp dir, plus the keys the test's clients and gateway use.
type sshTarget struct {
	dir       string
	Port      int
	Login     string // the login name on the target (the user running the tests)
	HostPub   string // the target's host key, authorized_keys form
	OtherPub  string // another host key: pinning it makes the target's look changed
	GatewayKy string // the gateway's private key for the target
	AliceKey  string // alice's private key (registered with the gateway)
	AlicePub  string
	StrayKey  string // a key registered nowhere
	cmd       *exec.Cmd
}

// requireSSHTools fails in CI, and skips elsewhere, when OpenSSH's server or a client is
// missing (scripts/ensure-sshd.sh installs them).
func requireSSHTools(t testing.TB, extra ...string) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		missing(t, "/usr/sbin/sshd not installed")
	}
	for _, tool := range append([]string{"ssh", "ssh-keygen"}, extra...) {
		requireTool(t, tool)
	}
}

func keygen(t testing.TB, path string) string {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", filepath.Base(path), "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", path, err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// startSSHTarget starts sshd by absolute path in the foreground (-D), logging to stderr (-e).
func startSSHTarget(t testing.TB) *sshTarget {
	t.Helper()
	requireSSHTools(t)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory; sshd will not start without it
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	st := &sshTarget{dir: dir, Port: freePort(t), Login: u.Username}
	st.HostPub = keygen(t, filepath.Join(dir, "host_ed25519"))
	st.OtherPub = keygen(t, filepath.Join(dir, "other_host_ed25519"))
	gwPub := keygen(t, filepath.Join(dir, "gateway_key"))
	st.GatewayKy = filepath.Join(dir, "gateway_key")
	st.AlicePub = keygen(t, filepath.Join(dir, "alice_key"))
	st.AliceKey = filepath.Join(dir, "alice_key")
	keygen(t, filepath.Join(dir, "stray_key"))
	st.StrayKey = filepath.Join(dir, "stray_key")
	// Only the gateway's key may log in to the target directly: clients go through the gateway.
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(gwPub+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
LogLevel VERBOSE
`, st.Port, filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	st.cmd = exec.Command("/usr/sbin/sshd", "-D", "-f", cfgPath, "-e")
	st.cmd.Stdout, st.cmd.Stderr = logf, logf
	if err := st.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() { st.cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		st.cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", clip(string(b), 6000))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", st.Addr(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not accepting on %s", st.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return st
}

func (st *sshTarget) Addr() string { return fmt.Sprintf("127.0.0.1:%d", st.Port) }

// Target is the gateway's config for this server under name, with the host key pinned.
func (st *sshTarget) Target(name string) targetCfg {
	return st.targetAt(name, st.Addr(), st.HostPub)
}

func (st *sshTarget) targetAt(name, addr, hostKey string) targetCfg {
	return targetCfg{Name: name, Type: "ssh", Address: addr,
		Raw: fmt.Sprintf("    username: %s\n    private_key_file: %s\n    host_key: %s\n", yq(st.Login), yq(st.GatewayKy), yq(hostKey))}
}

// sshClient runs the stock OpenSSH tools against a gateway's SSH listener, trusting its host
// key (read from its data dir) and nothing else of the user's environment.
type sshClient struct {
	g          *gateway
	dir        string
	knownHosts string
	port       int
}

func newSSHClient(t testing.TB, g *gateway) *sshClient {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("ssh-keygen", "-y", "-f", filepath.Join(g.DataDir, "ssh", "ssh_host_ed25519_key")).Output()
	if err != nil {
		t.Fatalf("read the gateway's host key: %v", err)
	}
	port := g.Port("ssh")
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, out)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &sshClient{g: g, dir: dir, knownHosts: kh, port: port}
}

// opts are the options every tool gets: no config file, the gateway's host key pinned, no
// agent, the given identity only (or none: password).
func (c *sshClient) opts(login, key string) []string {
	o := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=15", "-o", "IdentityAgent=none"}
	if login != "" { // "": the login is in the tool's user@host argument
		o = append(o, "-o", "User="+login)
	}
	if key != "" {
		o = append(o, "-o", "IdentitiesOnly=yes", "-i", key, "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
			"-o", "KbdInteractiveAuthentication=no")
	} else {
		o = append(o, "-o", "PubkeyAuthentication=no", "-o", "IdentityFile=/dev/null")
	}
	return o
}

func (c *sshClient) env(extra ...string) []string {
	var env []string
	for _, kv := range cleanEnv() {
		if k, _, _ := strings.Cut(kv, "="); k == "SSH_AUTH_SOCK" || k == "HOME" || k == "SSH_ASKPASS" || k == "DISPLAY" {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+c.dir), extra...)
}

// ssh runs `ssh -p PORT -o User=LOGIN 127.0.0.1 ARGS...` with key.
func (c *sshClient) ssh(login, key string, args ...string) cmdResult {
	a := append(c.opts(login, key), "-p", fmt.Sprint(c.port), "127.0.0.1")
	return run(60*time.Second, c.env(), nil, "ssh", append(a, args...)...)
}

// withPassword runs an OpenSSH tool that authenticates with password (askpass, forced).
func (c *sshClient) withPassword(t testing.TB, password string, name string, args ...string) cmdResult {
	t.Helper()
	askpass := filepath.Join(c.dir, "askpass.sh")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$AIRLOCK_TEST_SECRET\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return run(60*time.Second, c.env("SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0",
		"AIRLOCK_TEST_SECRET="+password), nil, name, args...)
}

// sshCommand is the ssh command line (for scp -S, rsync -e, tmux) with key.
func (c *sshClient) sshCommand(login, key string) []string {
	return append([]string{"ssh"}, c.opts(login, key)...)
}

// waitSSHSession waits for the one ssh session of user on target that started after since to
// end, and returns it with its events (chain checked).
func (g *gateway) waitSSHSession(t testing.TB, user, target string, since time.Time) (Session, []Event) {
	t.Helper()
	return g.waitSSHSessionSlack(t, user, target, since, time.Second)
}

// waitSSHSessionSlack is waitSSHSession for sessions that started at most slack before since
// (0 for sessions that follow each other quickly; the clock is this machine's).
func (g *gateway) waitSSHSessionSlack(t testing.TB, user, target string, since time.Time, slack time.Duration) (Session, []Event) {
	t.Helper()
	tok := g.adminToken(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ss []Session
		for _, s := range g.sessions(t, tok, sessionFilter{User: user, Target: target}) {
			if !s.StartedAt.Before(since.Add(-slack)) && s.Type == "ssh" {
				ss = append(ss, s)
			}
		}
		if len(ss) == 1 && ss[0].ended() {
			ev := g.events(t, tok, ss[0].ID)
			checkChain(t, ev)
			return ss[0], ev
		}
		if len(ss) > 1 {
			t.Fatalf("want 1 ssh session of %s on %s since %s, have %d: %+v", user, target, since, len(ss), ss)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: no ended ssh session of %s on %s since %s: %+v", user, target, since, ss)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// terminalText concatenates the text of every event of typ (terminal.output, terminal.input)
// for stream ("" stdout).
func terminalText(ev []Event, typ, stream string) string {
	var b strings.Builder
	for _, e := range ofType(ev, typ) {
		if e.str("stream") == stream {
			b.WriteString(e.Text)
			if e.Base64 != "" {
				raw, _ := base64.StdEncoding.DecodeString(e.Base64)
				b.Write(raw)
			}
		}
	}
	return b.String()
}

// startSSHGateway starts a real sshd target and a gateway whose SSH listener reaches it as
// target web-1, with alice's key registered.
func startSSHGateway(t testing.TB) (*sshTarget, *gateway) {
	t.Helper()
	st := startSSHTarget(t)
	users := defaultUsers()
	users[0].SSHKeys = []string{st.AlicePub}
	return st, startGateway(t, gwConfig{Listeners: []string{"ssh"}, Users: users, Targets: []targetCfg{st.Target("web-1")}})
}

// seqText is what `seq 1 n` prints.
func seqText(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// startSSHAgent starts the stock ssh-agent on a socket of its own, stopped at the end of the
// test, and returns the socket's path.
func startSSHAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ag := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := ag.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { ag.Process.Kill(); ag.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
	}
}

// withAgent is opts with the client using (and so able to forward, with -A) the agent at
// sock instead of none: OpenSSH forwards only the agent it uses itself.
func withAgent(opts []string, sock string) []string {
	for i, a := range opts {
		if a == "IdentityAgent=none" {
			opts[i] = "IdentityAgent=" + sock
		}
	}
	return opts
}
