package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSSHFiles copies files both ways through the gateway with the stock tools, each as it is
// documented in docs/ssh.md: scp (its default sftp mode, and the legacy protocol with -O), sftp
// and rsync -e ssh, with the target named by -o User=alice:web-1 or in the user@host form with
// '+' (alice+web-1@HOST:PATH, which scp and rsync can parse). Each copy is checked byte for byte
// and in its recording.
func testSSHFiles(t *testing.T, f *sshFixture) {
	requireSSHTools(t, "scp", "sftp", "rsync")
	local := t.TempDir()
	remote := t.TempDir() // on the target: sshd runs as the same user on this machine
	os.Chmod(remote, 0o755)
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	copy(data[100:], "card 4111 1111 1111 1111 in a binary file\n") // not masked: web-1 has no masking
	src := filepath.Join(local, "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(f.c.port)
	key := f.st.AliceKey
	same := func(t *testing.T, path string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("copied file: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, not the %d bytes sent", path, len(got), len(data))
		}
	}
	// transfers returns the session's file.transfer events after checking it ended cleanly.
	transfers := func(t *testing.T, since time.Time) ([]Event, []Event) {
		t.Helper()
		_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
		return ofType(ev, "file.transfer"), ev
	}
	sshOpts := strings.Join(f.c.opts("alice:web-1", key), " ")
	for _, tc := range []struct {
		name string
		// up copies src to dst on the target, down copies it back to back.
		up, down func(dst, back string) cmdResult
		tool     string // the file.transfer events' tool
		exec     string // the exec command's start, for scp -O and rsync
	}{
		{
			name: "scp",
			up: func(dst, _ string) cmdResult {
				return f.c.run("scp", append(f.c.opts("alice:web-1", key), "-P", port, src, "127.0.0.1:"+dst)...)
			},
			down: func(dst, back string) cmdResult {
				// The '+' form, in the user@host:path argument itself.
				return f.c.run("scp", append(f.c.opts("", key), "-P", port, "alice+web-1@127.0.0.1:"+dst, back)...)
			},
			tool: "sftp",
		},
		{
			name: "scp -O",
			up: func(dst, _ string) cmdResult {
				return f.c.run("scp", append(f.c.opts("alice:web-1", key), "-O", "-P", port, src, "127.0.0.1:"+dst)...)
			},
			down: func(dst, back string) cmdResult {
				return f.c.run("scp", append(f.c.opts("", key), "-O", "-P", port, "alice+web-1@127.0.0.1:"+dst, back)...)
			},
			tool: "scp", exec: "scp ",
		},
		{
			name: "sftp",
			up: func(dst, _ string) cmdResult {
				return f.c.runIn(fmt.Sprintf("put %s %s\n", src, dst), "sftp", append(f.c.opts("alice:web-1", key), "-b", "-", "-P", port, "127.0.0.1")...)
			},
			down: func(dst, back string) cmdResult {
				return f.c.runIn(fmt.Sprintf("get %s %s\n", dst, back), "sftp", append(f.c.opts("alice:web-1", key), "-b", "-", "-P", port, "127.0.0.1")...)
			},
			tool: "sftp",
		},
		{
			name: "rsync",
			up: func(dst, _ string) cmdResult {
				return f.c.run("rsync", "-e", "ssh "+sshOpts+" -p "+port, src, "127.0.0.1:"+dst)
			},
			down: func(dst, back string) cmdResult {
				return f.c.run("rsync", "-e", "ssh "+strings.Join(f.c.opts("", key), " ")+" -p "+port, "alice+web-1@127.0.0.1:"+dst, back)
			},
			tool: "rsync", exec: "rsync --server",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "")
			dst := filepath.Join(remote, name+".bin")
			back := filepath.Join(local, name+".back")
			for _, dir := range []struct {
				op   string
				path string
				fn   func(string, string) cmdResult
				file string
			}{{"write", dst, tc.up, dst}, {"read", dst, tc.down, back}} {
				since := time.Now()
				if r := dir.fn(dst, back); r.Code != 0 {
					t.Fatalf("%s (%s): %s", tc.name, dir.op, r)
				}
				same(t, dir.file)
				xs, ev := transfers(t, since)
				var found bool
				for _, x := range xs {
					if x.str("op") != dir.op || x.str("path") != dir.path && !strings.HasSuffix(dir.path, x.str("path")) {
						continue
					}
					found = true
					n := x.num("bytes_written")
					if dir.op == "read" {
						n = x.num("bytes_read")
					}
					if x.str("tool") != tc.tool || x.str("status") != "ok" || n < int64(len(data)) && tc.tool != "rsync" || n == 0 {
						t.Errorf("%s: file.transfer = %v, want tool %s, status ok, %d bytes", dir.op, x.Data, tc.tool, len(data))
					}
				}
				if !found {
					t.Errorf("%s: no file.transfer event %s of %s: %+v", dir.op, dir.op, dir.path, xs)
				}
				if tc.exec != "" {
					execs := ofType(ev, "exec")
					if len(execs) == 0 || !strings.HasPrefix(execs[0].str("command"), tc.exec) {
						t.Errorf("%s: exec events %+v, want the command %q...", dir.op, execs, tc.exec)
					}
					if x := ofType(ev, "exec.exit"); len(x) != 1 || x[0].num("status") != 0 {
						t.Errorf("%s: exec.exit = %+v", dir.op, x)
					}
					if out := terminalText(ev, "terminal.output", ""); out != "" {
						t.Errorf("%s: the copy's bytes were recorded as terminal output (%d bytes)", dir.op, len(out))
					}
				}
				os.Remove(back)
			}
		})
	}

	// sftp operations other than reads and writes are recorded with their paths and outcome.
	since := time.Now()
	batch := fmt.Sprintf("mkdir %[1]s/d\nrename %[1]s/sftp.bin %[1]s/d/moved.bin\nrm %[1]s/d/moved.bin\nrmdir %[1]s/d\n-rm %[1]s/missing\n", remote)
	if r := f.c.runIn(batch, "sftp", append(f.c.opts("alice:web-1", key), "-b", "-", "-P", port, "127.0.0.1")...); r.Code != 0 {
		t.Fatalf("sftp batch: %s", r)
	}
	xs, _ := transfers(t, since)
	var ops []string
	for _, x := range xs {
		ops = append(ops, x.str("op")+" "+strings.TrimPrefix(x.str("path"), remote)+" "+x.str("status"))
	}
	got := strings.Join(ops, "\n")
	for _, want := range []string{"mkdir /d ok", "rename /sftp.bin ok", "remove /d/moved.bin ok", "rmdir /d ok", "remove /missing no such file"} {
		if !strings.Contains(got, want) {
			t.Errorf("sftp operations recorded:\n%s\nlack %q", got, want)
		}
	}

	// A policy without sftp refuses scp, sftp and rsync alike, with the reason: bob's rule on
	// web-3 allows shell and exec only.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"scp", append(f.c.opts("bob:web-3", ""), "-P", port, src, "127.0.0.1:"+remote+"/no.bin")},
		{"scp", append(f.c.opts("bob:web-3", ""), "-O", "-P", port, src, "127.0.0.1:"+remote+"/no.bin")},
		{"rsync", []string{"-e", "ssh " + strings.Join(f.c.opts("bob:web-3", ""), " ") + " -p " + port, src, "127.0.0.1:" + remote + "/no.bin"}},
	} {
		r := f.c.withPassword(t, bobPassword, tc.name, tc.args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "not allowed") {
			t.Errorf("%s %v on web-3: want a refusal that says why, got %s", tc.name, tc.args[len(tc.args)-3:], r)
		}
		if _, err := os.Stat(filepath.Join(remote, "no.bin")); err == nil {
			t.Fatalf("%s copied a file where the policy refuses file transfer", tc.name)
		}
	}
	if r := f.c.withPassword(t, bobPassword, "ssh", append(f.c.opts("bob:web-3", ""), "-p", port, "127.0.0.1", "echo exec-ok")...); r.Code != 0 || r.Stdout != "exec-ok\n" {
		t.Errorf("exec on web-3 (allowed): %s", r)
	}
}

// run runs a stock tool with the client's environment.
func (c *sshClient) run(name string, args ...string) cmdResult {
	return run(2*time.Minute, c.env(), nil, name, args...)
}

// runIn runs a stock tool with stdin.
func (c *sshClient) runIn(stdin, name string, args ...string) cmdResult {
	return run(2*time.Minute, c.env(), strings.NewReader(stdin), name, args...)
}
