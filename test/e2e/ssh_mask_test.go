package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testSSHMaskCat: `cat` of a file full of card numbers through web-2 (masking credit_card). The
// file is large enough that the target's output reaches the gateway in many reads, which split
// card numbers at arbitrary bytes; none reaches the client or the recording unmasked, and each
// is masked exactly once. A guardrail refuses `rm -rf` on the same target.
func testSSHMaskCat(t *testing.T, f *sshFixture) {
	cards := []struct{ raw, masked string }{
		{"4111111111111111", "************1111"},
		{"4111 1111 1111 1111", "**** **** **** 1111"},
		{"5555-5555-5555-4444", "****-****-****-4444"},
		{"378282246310005", "***********0005"},
	}
	var b strings.Builder
	const lines = 30000
	for i := range lines {
		// Lines of varying length, so that read boundaries fall at every offset of a number.
		fmt.Fprintf(&b, "%d %s card %s end\n", i, strings.Repeat("x", i%13), cards[i%len(cards)].raw)
	}
	path := filepath.Join(t.TempDir(), "cards.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	r := f.c.ssh("alice:web-2", f.st.AliceKey, "cat "+path)
	if r.Code != 0 {
		t.Fatalf("cat through the gateway: %s", r)
	}
	raw := regexp.MustCompile(`4111[ -]?1111[ -]?1111|5555[ -]?5555[ -]?5555|3782[ -]?822463`)
	check := func(what, out string) {
		t.Helper()
		if m := raw.FindString(out); m != "" {
			i := strings.Index(out, m)
			t.Errorf("%s: a card number went through unmasked: %q", what, out[max(0, i-60):min(len(out), i+60)])
		}
		total := 0
		for _, c := range cards {
			total += strings.Count(out, " card "+c.masked+" end\n")
		}
		if total != lines {
			t.Errorf("%s: %d masked card numbers in their lines, want %d", what, total, lines)
		}
	}
	check("client output", r.Stdout)
	_, ev := f.g.waitSSHSession(t, "alice", "web-2", since)
	rec := terminalText(ev, "terminal.output", "")
	check("recording", rec)
	if rec != r.Stdout {
		t.Errorf("the recorded output (%d bytes) differs from what the client got (%d bytes)", len(rec), len(r.Stdout))
	}
	var hits int64
	outs := ofType(ev, "terminal.output")
	for _, e := range outs {
		if m, ok := e.Data["masked"].(map[string]any); ok {
			hits += Event{Data: m}.num("credit_card")
		}
	}
	if hits != lines {
		t.Errorf("terminal.output events count %d credit_card hits, want %d", hits, lines)
	}
	t.Logf("%d bytes of output in %d recorded reads", len(r.Stdout), len(outs))
	if x := ofType(ev, "exec.exit"); len(x) != 1 || x[0].num("status") != 0 {
		t.Errorf("exec.exit = %+v", x)
	}

	// The guardrail on web-2.
	g := f.c.ssh("alice:web-2", f.st.AliceKey, "rm -rf /tmp/airlock-not-there")
	if g.Code != 1 || !strings.Contains(g.Stderr, "refused by policy") {
		t.Errorf("rm -rf on web-2: want exit 1 and a refusal, got %s", g)
	}
}

// testSSHMaskInteractive: on a terminal with masking on, a card number the shell prints is
// masked on the screen, and the session's last output (stty's answer, digits that are held back
// a moment) is on screen before the exit status.
func testSSHMaskInteractive(t *testing.T, f *sshFixture) {
	tm := newTmux(t, t.TempDir(), f.c.env())
	sshCmd := strings.Join(append(f.c.sshCommand("alice:web-2", f.st.AliceKey), "-tt", "-p", fmt.Sprint(f.c.port), "127.0.0.1"), " ")
	tm.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", sshCmd+"; echo SSH-EXITED-$?; sleep 60")
	tm.send("export PS1='PROMPT> '", "Enter")
	tm.waitFor("PROMPT> ")
	tm.send("echo 41111111''11111111 end", "Enter")
	tm.waitFor("\n************1111 end\n") // the printed card, masked
	if s := tm.screen(); strings.Contains(s, "4111111111111111") {
		t.Errorf("the card number is on the screen:\n%s", s)
	}
	tm.send("clear; stty size; exit 4", "Enter")
	tm.waitFor("SSH-EXITED-4")
	if s := tm.screen(); !strings.Contains(s, "30 100") {
		t.Errorf("stty's answer is not on the screen before the exit:\n%s", s)
	}
}
