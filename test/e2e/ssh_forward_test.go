package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoServer accepts connections on a loopback port and answers each line with "echo: LINE",
// until the test ends (the far end of ssh forwards and kubectl port-forward).
func echoServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo: %s\n", sc.Text())
				}
			}()
		}
	}()
	return l.Addr().String()
}

// bgSSH is ssh running in the background (ssh -N -L/-R), with its stderr kept.
type bgSSH struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	done   chan struct{}
}

func (b *bgSSH) errText() string { return b.stderr.String() }

func (c *sshClient) background(t *testing.T, env []string, args ...string) *bgSSH {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &bgSSH{cmd: exec.CommandContext(ctx, "ssh", args...), done: make(chan struct{})}
	b.cmd.Env = env
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// stop ends ssh and waits for it.
func (b *bgSSH) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// dialLine connects to addr (retrying while ssh sets the port up), sends a line and returns the
// answer ("" and the error when the connection is closed without one).
func dialLine(t *testing.T, addr, line string, ready <-chan struct{}) (string, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "%s\n", line)
			ans, err := bufio.NewReader(c).ReadString('\n')
			return strings.TrimSpace(ans), err
		}
		select {
		case <-ready:
			return "", fmt.Errorf("ssh exited before %s listened: %w", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testSSHForwarding: ssh -L and ssh -R where the policy allows port forwarding (alice on web-1),
// refused with the reason where it does not (bob's default: no forwarding); agent forwarding and
// X11 refused; each forwarded connection recorded with its destination and bytes each way.
func testSSHForwarding(t *testing.T, f *sshFixture) {
	echo := echoServer(t)
	port := fmt.Sprint(f.c.port)

	t.Run("local allowed", func(t *testing.T) {
		lport := freePort(t)
		since := time.Now()
		b := f.c.background(t, f.c.env(), append(f.c.opts("alice:web-1", f.st.AliceKey), "-N", "-o", "ExitOnForwardFailure=yes",
			"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, echo), "-p", port, "127.0.0.1")...)
		ans, err := dialLine(t, fmt.Sprintf("127.0.0.1:%d", lport), "through-L", b.done)
		if err != nil || ans != "echo: through-L" {
			t.Fatalf("through ssh -L: %q, %v; ssh said: %s", ans, err, b.errText())
		}
		b.stop()
		_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
		var closed []Event
		for _, e := range ofType(ev, "forward") {
			if e.str("kind") == "local" && e.str("destination") == echo && e.Data["closed"] == true {
				closed = append(closed, e)
			}
		}
		if len(closed) != 1 || closed[0].num("bytes_from_client") != int64(len("through-L\n")) ||
			closed[0].num("bytes_to_client") != int64(len("echo: through-L\n")) {
			t.Errorf("recorded forward events %+v, want one closed local forward to %s with 10 and 15 bytes", ofType(ev, "forward"), echo)
		}
	})

	// Agent forwarding (ssh -A) where the policy allows it (alice on web-3): the target's
	// ssh-add lists the key held by the client's ssh-agent, and the agent channel is recorded
	// as a forward. ("agent and X11 refused" below is the refusal.)
	t.Run("agent allowed", func(t *testing.T) {
		sock := startSSHAgent(t)
		if r := run(time.Minute, f.c.env("SSH_AUTH_SOCK="+sock), nil, "ssh-add", f.st.StrayKey); r.Code != 0 {
			t.Fatalf("ssh-add: %s", r)
		}
		fp := run(time.Minute, nil, nil, "ssh-keygen", "-l", "-f", f.st.StrayKey+".pub")
		want := strings.Fields(fp.Stdout)
		if fp.Code != 0 || len(want) < 2 {
			t.Fatalf("ssh-keygen -l: %s", fp)
		}
		args := withAgent(f.c.opts("alice:web-3", f.st.AliceKey), sock)
		since := time.Now()
		r := run(time.Minute, f.c.env(), nil, "ssh", append(args, "-A", "-p", port, "127.0.0.1", "ssh-add -l")...)
		if r.Code != 0 || !strings.Contains(r.Stdout, want[1]) {
			t.Fatalf("ssh -A: the target's ssh-add -l does not list %s: %s", want[1], r)
		}
		_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-3", since, 0)
		var agent []Event
		for _, e := range ofType(ev, "forward") {
			if e.str("kind") == "agent" {
				agent = append(agent, e)
			}
		}
		if len(agent) == 0 || len(ofType(ev, "denied")) != 0 {
			t.Errorf("allowed agent forwarding: forward events %+v, denied %+v", ofType(ev, "forward"), ofType(ev, "denied"))
		}
	})

	t.Run("local refused", func(t *testing.T) {
		lport := freePort(t)
		askpass := filepath.Join(f.c.dir, "askpass-fwd.sh")
		os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$AIRLOCK_TEST_SECRET\"\n"), 0o700)
		env := f.c.env("SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "AIRLOCK_TEST_SECRET="+bobPassword)
		since := time.Now()
		b := f.c.background(t, env, append(f.c.opts("bob:web-1", ""), "-N", "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, echo), "-p", port, "127.0.0.1")...)
		ans, err := dialLine(t, fmt.Sprintf("127.0.0.1:%d", lport), "should-not-pass", b.done)
		if ans != "" || err == nil {
			t.Fatalf("bob's ssh -L went through: %q", ans)
		}
		// ssh prints the gateway's reason for the refused channel.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(b.errText(), "not allowed by policy") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if e := b.errText(); !strings.Contains(e, "administratively prohibited") || !strings.Contains(e, "port forwarding to "+echo+" is not allowed by policy") {
			t.Errorf("ssh's stderr does not give the reason: %q", e)
		}
		b.stop()
		_, ev := f.g.waitSSHSessionSlack(t, "bob", "web-1", since, 0)
		if d := ofType(ev, "denied"); len(d) != 1 || d[0].str("request") != "direct-tcpip" || d[0].str("detail") != echo {
			t.Errorf("denied events %+v, want one direct-tcpip to %s", d, echo)
		}
		if fw := ofType(ev, "forward"); len(fw) != 0 {
			t.Errorf("a refused forward was recorded as a forward: %+v", fw)
		}
	})

	t.Run("remote allowed", func(t *testing.T) {
		rport := freePort(t) // the target (this machine's sshd) listens there
		since := time.Now()
		b := f.c.background(t, f.c.env(), append(f.c.opts("alice:web-1", f.st.AliceKey), "-N", "-o", "ExitOnForwardFailure=yes",
			"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, echo), "-p", port, "127.0.0.1")...)
		ans, err := dialLine(t, fmt.Sprintf("127.0.0.1:%d", rport), "through-R", b.done)
		if err != nil || ans != "echo: through-R" {
			t.Fatalf("through ssh -R: %q, %v; ssh said: %s", ans, err, b.errText())
		}
		b.stop()
		_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
		var listen, conns int
		for _, e := range ofType(ev, "forward") {
			switch {
			case e.str("kind") == "remote-listen" && e.str("destination") == fmt.Sprintf("127.0.0.1:%d", rport):
				listen++
			case e.str("kind") == "remote" && e.Data["closed"] == true:
				conns++
				if e.num("bytes_to_client") != int64(len("through-R\n")) || e.num("bytes_from_client") != int64(len("echo: through-R\n")) {
					t.Errorf("remote forward bytes: %v", e.Data)
				}
			}
		}
		if listen != 1 || conns != 1 {
			t.Errorf("forward events %+v: want the listen and one closed connection", ofType(ev, "forward"))
		}
	})

	t.Run("remote refused", func(t *testing.T) {
		rport := freePort(t)
		askpass := filepath.Join(f.c.dir, "askpass-fwd.sh")
		os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$AIRLOCK_TEST_SECRET\"\n"), 0o700)
		env := f.c.env("SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "AIRLOCK_TEST_SECRET="+bobPassword)
		since := time.Now()
		r := run(time.Minute, env, nil, "ssh", append(f.c.opts("bob:web-1", ""), "-N", "-o", "ExitOnForwardFailure=yes",
			"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, echo), "-p", port, "127.0.0.1")...)
		if r.Code != 255 || !strings.Contains(r.Stderr, "remote port forwarding failed") {
			t.Fatalf("bob's ssh -R: want it refused, got %s", r)
		}
		_, ev := f.g.waitSSHSessionSlack(t, "bob", "web-1", since, 0)
		if d := ofType(ev, "denied"); len(d) != 1 || d[0].str("request") != "tcpip-forward" || !strings.Contains(d[0].str("reason"), "not allowed by policy") {
			t.Errorf("denied events %+v, want one tcpip-forward", d)
		}
	})

	t.Run("agent and X11 refused", func(t *testing.T) {
		// A real agent, offered with -A: the target sees no agent. X11 with -X: refused.
		sock := startSSHAgent(t)
		since := time.Now()
		args := withAgent(f.c.opts("alice:web-1", f.st.AliceKey), sock)
		r := run(time.Minute, f.c.env("DISPLAY=:0"), nil, "ssh", append(args, "-A", "-X", "-p", port, "127.0.0.1",
			"echo agent=${SSH_AUTH_SOCK:-none} display=${DISPLAY:-none}")...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "agent=none display=none") {
			t.Fatalf("ssh -A -X: %s", r)
		}
		if !strings.Contains(r.Stderr, "X11 forwarding request failed") {
			t.Errorf("ssh does not say X11 was refused: %q", r.Stderr)
		}
		_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
		var reqs []string
		for _, d := range ofType(ev, "denied") {
			reqs = append(reqs, d.str("request"))
		}
		if got := strings.Join(reqs, ","); !strings.Contains(got, "auth-agent") || !strings.Contains(got, "x11") {
			t.Errorf("denied requests %q, want auth-agent and x11", got)
		}
	})
}
