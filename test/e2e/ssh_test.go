package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// sshPolicies: alice may do everything but agent forwarding on web-*, and agent forwarding
// too on web-3; bob gets the defaults (shell, exec, sftp) on web-1 only; web-2 masks card
// numbers and refuses `rm -rf`.
const sshPolicies = `policies:
  - name: ssh-alice
    subjects: ["user:alice"]
    targets: ["web-*"]
    access: allow
    ssh: [shell, exec, sftp, port_forwarding]
  - name: ssh-alice-agent
    subjects: ["user:alice"]
    targets: ["web-3"]
    ssh: [agent_forwarding]
  - name: ssh-bob
    subjects: ["user:bob"]
    targets: ["web-1"]
    access: allow
  - name: web-2-guard
    subjects: ["*"]
    targets: ["web-2"]
    masking: [credit_card]
    ssh_deny_commands: ['rm\s+-rf']
  - name: ssh-bob-web-3
    subjects: ["user:bob"]
    targets: ["web-3"]
    access: allow
    ssh: [shell, exec]
  - name: pg
    subjects: ["*"]
    targets: ["pg"]
    access: allow
`

type sshFixture struct {
	st *sshTarget
	g  *gateway
	c  *sshClient
}

// TestSSH runs the SSH engine's end-to-end tests against one sshd and one gateway (both slow
// to start on a busy machine). Targets: web-1 and web-2 (this sshd), web-changed (its host key
// pinned to another key), web-down (nothing listening).
func TestSSH(t *testing.T) {
	requireBinary(t)
	requirePostgres(t)
	requireSSHTools(t)
	st := startSSHTarget(t)
	users := defaultUsers()
	users[0].SSHKeys = []string{st.AlicePub}
	g := startGateway(t, gwConfig{Listeners: []string{"ssh"}, Users: users,
		Targets: []targetCfg{defaultTargets()[0], st.Target("web-1"), st.Target("web-2"), st.Target("web-3"),
			st.targetAt("web-changed", st.Addr(), st.OtherPub),
			st.targetAt("web-down", fmt.Sprintf("127.0.0.1:%d", freePort(t)), st.HostPub)},
		Extra: sshPolicies})
	f := &sshFixture{st: st, g: g, c: newSSHClient(t, g)}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *sshFixture)
	}{
		{"Exec", testSSHExec},
		{"BulkOutput", testSSHBulkOutput},
		{"Ciphers", testSSHCiphers},
		{"PasswordAndToken", testSSHPasswordAndToken},
		{"Refusals", testSSHRefusals},
		{"Interactive", testSSHInteractive},
		{"MaskCat", testSSHMaskCat},
		{"MaskInteractive", testSSHMaskInteractive},
		{"Files", testSSHFiles},
		{"Forwarding", testSSHForwarding},
		{"Certificate", testSSHCertificate}, // last: it revokes alice's tokens
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

func testSSHExec(t *testing.T, f *sshFixture) {
	since := time.Now()
	r := f.c.ssh("alice:web-1", f.st.AliceKey, "echo hello from $(whoami); echo oops >&2; exit 3")
	if r.Code != 3 {
		t.Fatalf("want exit status 3 passed back, got %s", r)
	}
	if want := "hello from " + f.st.Login + "\n"; r.Stdout != want {
		t.Errorf("stdout = %q, want %q", r.Stdout, want)
	}
	if !strings.Contains(r.Stderr, "oops") {
		t.Errorf("stderr lacks the remote stderr: %q", r.Stderr)
	}
	s, ev := f.g.waitSSHSession(t, "alice", "web-1", since)
	start := ev[0]
	if start.str("auth_method") != "publickey" || start.str("target_type") != "ssh" {
		t.Errorf("session.start = %v", start.Data)
	}
	execs := ofType(ev, "exec")
	if len(execs) != 1 || execs[0].str("kind") != "exec" || !strings.Contains(execs[0].str("command"), "echo hello") {
		t.Fatalf("exec events = %+v", execs)
	}
	if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
		t.Errorf("recorded stdout %q != what the client saw %q", out, r.Stdout)
	}
	if e := terminalText(ev, "terminal.output", "stderr"); !strings.Contains(e, "oops") {
		t.Errorf("recorded stderr %q", e)
	}
	exits := ofType(ev, "exec.exit")
	if len(exits) != 1 || exits[0].num("status") != 3 {
		t.Errorf("exec.exit events = %+v", exits)
	}
	if s.EndReason == "" {
		t.Errorf("session has no end reason: %+v", s)
	}

	// Exit codes pass through unchanged, including 0 and a signal's.
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"true", 0}, {"exit 42", 42}, {"kill -TERM $$", 255}} {
		if r := f.c.ssh("alice:web-1", f.st.AliceKey, tc.cmd); r.Code != tc.code {
			t.Errorf("%q: want exit %d, got %s", tc.cmd, tc.code, r)
		}
	}

	// The client's stdin, and its end, reach the command after the exec request they follow:
	// an EOF that overtook it was lost by sshd, and a command reading stdin hung.
	for i := range 3 {
		a := append(f.c.opts("alice:web-1", f.st.AliceKey), "-p", fmt.Sprint(f.c.port), "127.0.0.1", "cat; echo eof-seen")
		r := run(20*time.Second, f.c.env(), strings.NewReader(strings.Repeat("x", i*1000)), "ssh", a...)
		if r.Code != 0 || r.Stdout != strings.Repeat("x", i*1000)+"eof-seen\n" {
			t.Fatalf("cat with %d bytes of stdin: %s", i*1000, r)
		}
	}

	// A command that starts as scp's server side but runs more is an ordinary command: its
	// output is recorded (it was taken for a copy, whose stdin and stdout are not kept, and
	// needed only sftp in the policy).
	since = time.Now()
	cmd := "scp -f /nonexistent 2>/dev/null; echo not-a-copy-$((6*7))"
	r = f.c.ssh("alice:web-1", f.st.AliceKey, cmd)
	if !strings.Contains(r.Stdout, "not-a-copy-42") {
		t.Fatalf("%q: %s", cmd, r)
	}
	_, ev = f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0) // the cats' sessions ended just before
	if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
		t.Errorf("%q: recorded stdout %q != what the client saw %q", cmd, out, r.Stdout)
	}
	if x := ofType(ev, "file.transfer"); len(x) != 0 {
		t.Errorf("%q recorded as a file copy: %+v", cmd, x)
	}
}

// testSSHBulkOutput: output big enough to take copyOut's pipelined path (pipeOut: one goroutine
// records, another forwards) reaches the client whole and in order on both streams, is
// recorded whole, and the exit status still follows it.
func testSSHBulkOutput(t *testing.T, f *sshFixture) {
	since := time.Now()
	from := f.g.logSize()
	r := f.c.ssh("alice:web-1", f.st.AliceKey, "seq 1 1500000; seq 1 300000 >&2; exit 7")
	if r.Code != 7 {
		t.Fatalf("want exit status 7, got %d (stderr %s)", r.Code, clip(r.Stderr, 500))
	}
	if want := seqText(1500000); r.Stdout != want {
		t.Fatalf("stdout: %d bytes, want %d (same: %v)", len(r.Stdout), len(want), strings.HasPrefix(want, r.Stdout))
	}
	if want := seqText(300000); r.Stderr != want {
		t.Fatalf("stderr: %d bytes, want %d", len(r.Stderr), len(want))
	}
	_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
	if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
		t.Errorf("recorded stdout: %d bytes, the client got %d", len(out), len(r.Stdout))
	}
	if e := terminalText(ev, "terminal.output", "stderr"); e != r.Stderr {
		t.Errorf("recorded stderr: %d bytes, the client got %d", len(e), len(r.Stderr))
	}
	log, _ := os.ReadFile(f.g.logPath)
	if !bytes.Contains(log[from:], []byte(`"msg":"output pipelined"`)) {
		t.Errorf("the output never took the pipelined path: this test does not test it")
	}

	// The client goes away in the middle of bulk output (ssh killed after 16 MiB of an endless
	// cat): the session ends, its recording's chain is whole, and the next session works.
	since = time.Now()
	from = f.g.logSize()
	cmd := exec.Command("ssh", append(f.c.opts("alice:web-1", f.st.AliceKey), "-p", fmt.Sprint(f.c.port), "127.0.0.1", "cat /dev/zero")...)
	cmd.Env = f.c.env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyN(io.Discard, out, 16<<20)
	cmd.Process.Kill()
	cmd.Wait()
	if n != 16<<20 {
		t.Fatalf("read %d bytes of the endless output: %v", n, err)
	}
	s, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0) // checks the chain
	if s.EndReason != "client_disconnected" {
		t.Errorf("end reason %q, want client_disconnected", s.EndReason)
	}
	if got := len(terminalText(ev, "terminal.output", "")); got < 16<<20 {
		t.Errorf("recorded %d bytes of output, the client read %d", got, n)
	}
	log, _ = os.ReadFile(f.g.logPath)
	if !bytes.Contains(log[from:], []byte(`"msg":"output pipelined"`)) {
		t.Errorf("the endless output never took the pipelined path")
	}
	if r := f.c.ssh("alice:web-1", f.st.AliceKey, "echo still-here"); r.Code != 0 || r.Stdout != "still-here\n" {
		t.Errorf("the next session: %s", r)
	}
}

// testSSHCiphers: stock OpenSSH gets AES-GCM from the listener on amd64 (it would pick CTR with
// an HMAC if offered both), and a client configured without GCM still connects with what it has.
func testSSHCiphers(t *testing.T, f *sshFixture) {
	r := f.c.ssh("alice:web-1", f.st.AliceKey, "-v", "echo default")
	if r.Code != 0 || r.Stdout != "default\n" {
		t.Fatalf("ssh: %s", r)
	}
	want := "server->client cipher: aes128-gcm@openssh.com"
	if runtime.GOARCH != "amd64" {
		want = "server->client cipher: " // x/crypto/ssh's own offer elsewhere
	}
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("ssh -v does not say %q:\n%s", want, clip(r.Stderr, 4000))
	}
	for _, c := range []string{"aes256-ctr", "aes128-ctr,aes256-gcm@openssh.com"} {
		r := f.c.ssh("alice:web-1", f.st.AliceKey, "-v", "-c", c, "echo chosen")
		if r.Code != 0 || r.Stdout != "chosen\n" {
			t.Fatalf("ssh -c %s: %s", c, r)
		}
		first, _, _ := strings.Cut(c, ",")
		if c == "aes128-ctr,aes256-gcm@openssh.com" && runtime.GOARCH == "amd64" {
			first = "aes256-gcm@openssh.com" // it has GCM: that is all it is offered
		}
		if !strings.Contains(r.Stderr, "server->client cipher: "+first) {
			t.Errorf("ssh -c %s: negotiated another cipher than %s:\n%s", c, first, clip(r.Stderr, 4000))
		}
	}
}

func testSSHPasswordAndToken(t *testing.T, f *sshFixture) {
	// Password (OpenSSH asks through SSH_ASKPASS; keyboard-interactive or password method).
	since := time.Now()
	args := append(f.c.opts("bob:web-1", ""), "-p", fmt.Sprint(f.c.port), "127.0.0.1", "echo via-password")
	r := f.c.withPassword(t, bobPassword, "ssh", args...)
	if r.Code != 0 || r.Stdout != "via-password\n" {
		t.Fatalf("password login: %s", r)
	}
	_, ev := f.g.waitSSHSession(t, "bob", "web-1", since)
	if m := ev[0].str("auth_method"); m != "password" {
		t.Errorf("auth_method = %q, want password", m)
	}

	// A gateway token in the password field.
	tok := f.g.token(t, "bob", bobPassword)
	r = f.c.withPassword(t, tok, "ssh", args...)
	if r.Code != 0 || r.Stdout != "via-password\n" {
		t.Fatalf("token login: %s", r)
	}
	// A wrong password is refused.
	r = f.c.withPassword(t, "not-the-password", "ssh", args...)
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Fatalf("wrong password: want Permission denied, got %s", r)
	}
}

func testSSHRefusals(t *testing.T, f *sshFixture) {
	for _, tc := range []struct {
		name, login, key string
		want             string
	}{
		{"wrong key", "alice:web-1", f.st.StrayKey, "Permission denied"},
		{"changed host key", "alice:web-changed", f.st.AliceKey, "does not match the pinned one"},
		{"target down", "alice:web-down", f.st.AliceKey, "cannot reach target web-down"},
		{"unknown target", "alice:nope", f.st.AliceKey, `target "nope" does not exist`},
		{"no target", "alice", f.st.AliceKey, "name the target in the user name"},
		{"policy", "bob:web-2", "", "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r cmdResult
			if tc.key == "" {
				args := append(f.c.opts(tc.login, ""), "-p", fmt.Sprint(f.c.port), "127.0.0.1", "true")
				r = f.c.withPassword(t, bobPassword, "ssh", args...)
			} else {
				r = f.c.ssh(tc.login, tc.key, "echo should-not-run")
			}
			if r.Code != 255 || !strings.Contains(r.Stderr, tc.want) || strings.Contains(r.Stdout, "should-not-run") {
				t.Fatalf("want exit 255 and %q on stderr, got %s", tc.want, r)
			}
		})
	}
	// Each refusal is in the audit log with its reason.
	tok := f.g.adminToken(t)
	var entries []string
	for _, s := range f.g.sessions(t, tok, sessionFilter{}) {
		if s.Type != "audit" {
			continue
		}
		for _, e := range f.g.events(t, tok, s.ID) {
			if e.Type == "audit" && e.str("action") == "login" {
				b, _ := json.Marshal(e.Data)
				entries = append(entries, string(b))
			}
		}
	}
	all := strings.Join(entries, "\n")
	for _, want := range []string{"does not match the pinned one", "cannot reach target web-down", "denied"} {
		if !strings.Contains(all, want) {
			t.Errorf("audit log has no denied login mentioning %q:\n%s", want, all)
		}
	}
}
