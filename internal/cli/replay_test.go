package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// Recorded text is the audited user's (a statement, a column name, a value a table holds, an
// error the target echoes back): replay and sessions show print its controls as escapes, so it
// can neither rewrite what the auditor sees nor command the auditor's terminal.
func TestReplayPrintsRecordedControlsAsText(t *testing.T) {
	h := newHarness(t)
	rec := &apitest.Recording{ID: "s3", Start: t0}
	rec.Add(event.SessionStart, 0, j(event.SessionStartData{User: "alice", Target: "pg", TargetType: "postgres"}), nil)
	// Shown in a terminal as it is, this statement reads "query: select 1".
	rec.Add(event.Query, time.Millisecond, j(event.QueryData{Text: "drop table accounts /*\r\x1b[K[+0.001s] query: select 1 */", Protocol: "simple"}), nil)
	rec.Add(event.Columns, 2*time.Millisecond, j(event.ColumnsData{Columns: []event.Column{{Name: "n\x1b[8m", OID: 25}}}), nil)
	rec.Add(event.Rows, 3*time.Millisecond, j(event.RowsData{Count: 1}), event.AppendRow(nil, [][]byte{[]byte("\x1b]52;c;cm0gLXJmIH4K\x07\u009b21t")}))
	rec.Add(event.Result, 4*time.Millisecond, j(event.ResultData{Tag: "SELECT 1", Rows: 1}), nil)
	rec.Add(event.Error, 5*time.Millisecond, j(event.MessageData{Severity: "ERROR", Code: "22P02", Message: "invalid input: \x1b[2J\x1b]0;pwned\x07"}), nil)
	rec.Add(event.SessionEnd, 6*time.Millisecond, j(event.SessionEndData{Reason: "client_terminated", Error: "bye\r\x1b[1A"}), nil)
	ended := t0.Add(time.Second)
	h.st.Put(store.Session{ID: "s3", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0, EndedAt: &ended, EndReason: "client_terminated"}, rec.Evs)
	h.as(t, "alice")

	code, out, errOut := h.run(t, runReplay, "s3", "--speed", "0")
	if code != 0 {
		t.Fatalf("replay: %d %s", code, errOut)
	}
	for _, w := range []string{
		`query: drop table accounts /*\r\x1b[K[+0.001s] query: select 1 */`,
		`n\x1b[8m`,
		`\x1b]52;c;cm0gLXJmIH4K\x07\u009b21t`,
		`invalid input: \x1b[2J\x1b]0;pwned\x07`,
		`error: bye\r\x1b[1A`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("replay lacks %s", w)
		}
	}
	if strings.ContainsAny(out, "\x1b\r\x07\u009b") {
		t.Errorf("replay wrote recorded controls to the terminal:\n%q", out)
	}
	code, out, errOut = h.run(t, runSessions, "show", "s3")
	if code != 0 || !strings.Contains(out, `End error:`) || !strings.Contains(out, `bye\r\x1b[1A`) || strings.ContainsAny(out, "\x1b\r") {
		t.Errorf("sessions show: %d %s\n%q", code, errOut, out)
	}
}

// A terminal session's output is replayed with its drawing sequences, and without those that
// would make the auditor's terminal write the clipboard, open links or answer on its input.
func TestReplayTerminalOutputCannotCommandTheViewersTerminal(t *testing.T) {
	h := newHarness(t)
	rec := &apitest.Recording{ID: "s4", Start: t0}
	rec.Add(event.SessionStart, 0, j(event.SessionStartData{User: "alice", Target: "box", TargetType: "ssh"}), nil)
	rec.Add(event.TerminalOutput, time.Millisecond, j(event.TerminalData{}),
		[]byte("$ \x1b[1;32mok\x1b[0m\r\n\x1b]52;c;cm0gLXJmIH4K\x07\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\\x1b[21t\x1bP$qm\x1b\\\r\n"))
	rec.Add(event.SessionEnd, 2*time.Millisecond, j(event.SessionEndData{Reason: "client_terminated"}), nil)
	ended := t0.Add(time.Second)
	h.st.Put(store.Session{ID: "s4", User: "alice", Target: "box", Type: "ssh", StartedAt: t0, EndedAt: &ended, EndReason: "client_terminated"}, rec.Evs)
	h.as(t, "alice")
	code, out, errOut := h.run(t, runReplay, "s4", "--speed", "0")
	if code != 0 {
		t.Fatalf("replay: %d %s", code, errOut)
	}
	if !strings.Contains(out, "$ \x1b[1;32mok\x1b[0m\r\nlink\r\n") {
		t.Errorf("replay did not draw the output as recorded:\n%q", out)
	}
	for _, bad := range []string{"\x1b]", "\x1b[21t", "\x1bP"} {
		if strings.Contains(out, bad) {
			t.Errorf("replay passed %q to the terminal:\n%q", bad, out)
		}
	}
}
