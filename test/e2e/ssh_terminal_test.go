package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tmux drives an interactive program in a detached tmux server of its own.
type tmux struct {
	t    *testing.T
	sock string
	env  []string
}

func newTmux(t *testing.T, dir string, env []string) *tmux {
	requireTool(t, "tmux")
	tm := &tmux{t: t, sock: filepath.Join(dir, "tmux.sock"), env: append(env, "TERM=xterm-256color")}
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", tm.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = tm.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tm *tmux) send(keys ...string) { tm.run(append([]string{"send-keys", "-t", "main"}, keys...)...) }

func (tm *tmux) screen() string { return tm.run("capture-pane", "-p", "-t", "main") }

// waitFor waits until the pane shows want.
func (tm *tmux) waitFor(want string) {
	tm.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := tm.screen()
		if strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the terminal never showed %q; it shows:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testSSHInteractive drives a real ssh in tmux: a prompt, a full-screen program, a resize, a
// password typed without echo; then checks the recording, the asciicast export and the replay.
func testSSHInteractive(t *testing.T, f *sshFixture) {
	requireTool(t, "less")
	dir := t.TempDir()
	tm := newTmux(t, dir, f.c.env())
	since := time.Now()
	defer func() {
		if !t.Failed() {
			return
		}
		tok := f.g.adminToken(t)
		for _, s := range f.g.sessions(t, tok, sessionFilter{User: "alice", Target: "web-1", From: since}) {
			for _, e := range f.g.events(t, tok, s.ID) {
				t.Logf("%s %d %s %q %v", s.ID, e.Seq, e.Type, clip(e.Text, 300), e.Data)
			}
		}
	}()
	sshCmd := strings.Join(append(f.c.sshCommand("alice:web-1", f.st.AliceKey), "-tt", "-p", fmt.Sprint(f.c.port), "127.0.0.1"), " ")
	tm.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", sshCmd+"; echo SSH-EXITED-$?; sleep 60")
	tm.send("export PS1='PROMPT> '", "Enter")
	tm.waitFor("PROMPT> ")
	tm.send("clear; stty size", "Enter")
	tm.waitFor("30 100")

	// A full-screen program: less on the alternate screen, quit with q.
	tm.send("seq 1 500 | less", "Enter")
	tm.waitFor("\n29\n")
	tm.send("G")
	tm.waitFor("(END)")
	tm.send("q")
	tm.waitFor("PROMPT> ")

	tm.run("resize-window", "-t", "main", "-x", "120", "-y", "40")
	tm.send("clear; stty size", "Enter")
	tm.waitFor("40 120")

	// A secret typed while the terminal does not echo, at a password prompt.
	// The prompt is split in the command so that waiting for it does not match the command's
	// own echo (typing ahead while the terminal still echoes would show the secret).
	tm.send(`read -s -p "Pass""word: " pw; echo; echo len=${#pw}`, "Enter")
	tm.waitFor("Password:") // capture-pane trims the trailing space
	tm.send("hunter2-Secret", "Enter")
	tm.waitFor("len=14")
	tm.send("exit 7", "Enter")
	tm.waitFor("SSH-EXITED-7")

	s, ev := f.g.waitSSHSession(t, "alice", "web-1", since)
	var sizes []string
	for _, e := range ofType(ev, "terminal.resize") {
		sizes = append(sizes, fmt.Sprintf("%dx%d", e.num("cols"), e.num("rows")))
	}
	if len(sizes) < 2 || sizes[0] != "100x30" || sizes[len(sizes)-1] != "120x40" {
		t.Errorf("recorded sizes %v, want 100x30 first and 120x40 last", sizes)
	}
	if first := ofType(ev, "terminal.resize"); len(first) > 0 && !strings.HasSuffix(first[0].str("term"), "-256color") { // tmux sets its own TERM
		t.Errorf("pty-req TERM = %q", first[0].str("term"))
	}
	out := terminalText(ev, "terminal.output", "")
	for _, want := range []string{"30 100", "40 120", "len=14", "\x1b[?1049h"} { // 1049h: less entered the alternate screen
		if !strings.Contains(out, want) {
			t.Errorf("recorded output lacks %q", want)
		}
	}
	in := terminalText(ev, "terminal.input", "")
	if !strings.Contains(in, "stty size") {
		t.Errorf("recorded input lacks the typed commands: %q", clip(in, 500))
	}
	if strings.Contains(in, "hunter2") || strings.Contains(out, "hunter2") {
		t.Errorf("the secret typed at the password prompt was recorded")
		for _, e := range ev {
			if e.Type == "terminal.input" || e.Type == "terminal.output" {
				t.Logf("%s %q %v", e.Type, e.Text, e.Data)
			}
		}
	}
	withheld := 0
	for _, e := range ofType(ev, "terminal.input") {
		if e.Data["withheld"] == true {
			withheld++
		}
	}
	if withheld == 0 {
		t.Errorf("no terminal.input event marked withheld")
	}
	// Withheld is not lost: the bytes are sealed in an original event, which an auditor's
	// (audited) reveal opens. A user who makes every line look like a password prompt hides
	// nothing that way.
	code, body := f.g.api(t, f.g.adminToken(t), "GET", "/api/v1/sessions/"+url.PathEscape(s.ID)+"/events?reveal=true", nil)
	if code != 200 {
		t.Fatalf("reveal events: HTTP %d %s", code, clip(string(body), 500))
	}
	var revealed struct {
		Events []struct {
			Type         string  `json:"type"`
			RevealedText *string `json:"revealed_text"`
			RevealError  string  `json:"reveal_error"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &revealed); err != nil {
		t.Fatal(err)
	}
	var typed strings.Builder
	for _, e := range revealed.Events {
		if e.Type == "terminal.input" && e.RevealedText != nil {
			typed.WriteString(*e.RevealedText)
		}
		if e.RevealError != "" {
			t.Errorf("%s: reveal error %s", e.Type, e.RevealError)
		}
	}
	if !strings.Contains(typed.String(), "hunter2-Secret") {
		t.Errorf("an auditor's reveal of the withheld input gives %q, want the secret typed", typed.String())
	}
	if x := ofType(ev, "exec.exit"); len(x) != 1 || x[0].num("status") != 7 {
		t.Errorf("exec.exit = %+v, want status 7", x)
	}

	// asciicast v2: a header with the first size, "o" output, an "r" event for the resize.
	env := append(cleanEnv(), "HOME="+dir, "AIRLOCK_GATEWAY="+f.g.apiURL(), "AIRLOCK_TOKEN="+f.g.token(t, "alice", alicePassword))
	castPath := filepath.Join(dir, "session.cast")
	if r := run(time.Minute, env, nil, airlockBin, "export", s.ID, "--format", "asciicast", "-o", castPath); r.Code != 0 {
		t.Fatalf("export --format asciicast: %s", r)
	}
	cast := readFile(t, castPath)
	sc := bufio.NewScanner(strings.NewReader(cast))
	sc.Buffer(nil, 1<<24)
	sc.Scan()
	var hdr struct {
		Version, Width, Height int
	}
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 || hdr.Width != 100 || hdr.Height != 30 {
		t.Fatalf("asciicast header %s (%v): want version 2, 100x30", sc.Text(), err)
	}
	var resizes, markers []string
	var text strings.Builder
	lastT := -1.0
	for sc.Scan() {
		var e []any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || len(e) != 3 {
			t.Fatalf("asciicast event line %q: %v", sc.Text(), err)
		}
		ts, _ := e[0].(float64)
		if ts < lastT {
			t.Fatalf("asciicast time goes back: %v after %v", ts, lastT)
		}
		lastT = ts
		switch e[1] {
		case "r":
			resizes = append(resizes, e[2].(string))
		case "o":
			text.WriteString(e[2].(string))
		case "m": // a line typed at the terminal (the player's "jump to a command")
			markers = append(markers, e[2].(string))
		default:
			t.Errorf("unexpected asciicast event %v", e)
		}
	}
	if !slices.Contains(markers, "exit 7") || !slices.Contains(markers, "clear; stty size") || strings.Contains(strings.Join(markers, "\n"), "hunter2") {
		t.Errorf("asciicast markers %q: want the typed commands, never the secret", markers)
	}
	if len(resizes) == 0 || resizes[len(resizes)-1] != "120x40" {
		t.Errorf("asciicast resizes %v, want ending 120x40", resizes)
	}
	if !strings.Contains(text.String(), "40 120") || !strings.Contains(text.String(), "len=14") {
		t.Errorf("asciicast output lacks the session's output")
	}

	// replay --speed 0 writes the terminal output at once; --speed 1000 waits a little.
	rp := run(time.Minute, env, nil, airlockBin, "replay", s.ID, "--speed", "0")
	if rp.Code != 0 || !strings.Contains(rp.Stdout, "40 120") || !strings.Contains(rp.Stdout, "exit status 7") {
		t.Errorf("replay --speed 0: %s", rp)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := exec.Command("cat", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
