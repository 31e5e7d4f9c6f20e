package asciicast

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
)

var t0 = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

func ev(typ event.Type, at time.Duration, data string, raw string) *event.Event {
	return &event.Event{Type: typ, Offset: at, Data: []byte(data), Raw: []byte(raw)}
}

func lines(t *testing.T, out string) (hdr map[string]any, evs [][]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if hdr == nil {
			if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
				t.Fatalf("header %q: %v", sc.Text(), err)
			}
			continue
		}
		var e []any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || len(e) != 3 {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return hdr, evs
}

func TestTerminal(t *testing.T) {
	var b strings.Builder
	c := New(&b, Session{ID: "s1", User: "alice", Target: "web-1", Type: "ssh", StartedAt: t0})
	c.Markers = true
	ms := time.Millisecond
	for _, e := range []*event.Event{
		ev(event.SessionStart, 0, `{}`, ""),
		ev(event.Exec, 2*ms, `{"channel":0,"kind":"shell","pty":true}`, ""),
		ev(event.TerminalOutput, 3*ms, `{"channel":0}`, "before the size\n"), // held until the header
		ev(event.TerminalResize, 4*ms, `{"channel":0,"cols":100,"rows":30,"term":"xterm"}`, ""),
		ev(event.TerminalInput, 5*ms, `{"channel":0}`, "ls -lx\x7f\r"),
		ev(event.TerminalOutput, 6*ms, `{"channel":0}`, "caf\xc3"), // é split across two outputs
		ev(event.TerminalOutput, 7*ms, `{"channel":0}`, "\xa9 <b>\r\n"),
		ev(event.TerminalResize, 8*ms, `{"channel":0,"cols":120,"rows":40}`, ""),
		ev(event.Exec, 9*ms, `{"channel":1,"kind":"exec","command":"uptime"}`, ""),
		ev(event.TerminalOutput, 10*ms, `{"channel":1}`, "up 3 days\n"), // no terminal: \r\n
		ev(event.TerminalOutput, 5*ms, `{"channel":0}`, "late"),         // time never goes back
	} {
		if err := c.Event(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	hdr, evs := lines(t, b.String())
	if hdr["version"] != 2.0 || hdr["width"] != 100.0 || hdr["height"] != 30.0 || hdr["timestamp"] != float64(t0.Unix()) ||
		hdr["title"] != "airlock session s1: alice -> web-1" {
		t.Fatalf("header %v", hdr)
	}
	want := [][]any{
		{0.003, "o", "before the size\n"},
		{0.005, "m", "ls -l"},
		{0.006, "o", "caf"},
		{0.007, "o", "é <b>\r\n"},
		{0.008, "r", "120x40"},
		{0.009, "m", "uptime"},
		{0.01, "o", "up 3 days\r\n"},
		{0.01, "o", "late"},
	}
	if len(evs) != len(want) {
		t.Fatalf("events:\n%v\nwant\n%v", evs, want)
	}
	for i := range want {
		for j := range want[i] {
			if evs[i][j] != want[i][j] {
				t.Errorf("event %d: %v, want %v", i, evs[i], want[i])
			}
		}
	}
	if !strings.Contains(b.String(), `"é <b>\r\n"`) {
		t.Errorf("< and > escaped: %s", b.String())
	}
}

func TestTerminalWithoutSize(t *testing.T) {
	var b strings.Builder
	c := New(&b, Session{ID: "s2", Type: "kubernetes", StartedAt: t0})
	c.Event(ev(event.TerminalOutput, time.Millisecond, `{"channel":0}`, "x\n"))
	c.Event(ev(event.SessionEnd, time.Hour, `{"reason":"interrupted"}`, ""))
	c.Finish()
	hdr, evs := lines(t, b.String())
	if hdr["width"] != 80.0 || hdr["height"] != 24.0 || len(evs) != 1 || evs[0][2] != "x\r\n" {
		t.Fatalf("%v %v", hdr, evs)
	}
}

func TestLive(t *testing.T) {
	var b strings.Builder
	c := Live(&b, Session{ID: "s3", Type: "ssh"}, 2*time.Second, 100, 30, []byte("so far <b>caf\xc3"))
	c.Markers = true
	c.Event(ev(event.TerminalInput, 2100*time.Millisecond, `{"channel":0}`, "ls\r"))
	c.Event(ev(event.TerminalOutput, time.Second, `{"channel":0}`, "\xa9!")) // recorded before the reset: at it
	c.Event(ev(event.TerminalResize, 3*time.Second, `{"channel":0,"cols":90,"rows":20}`, ""))
	got := b.String()
	want := `{"cols":100,"init":"so far <b>caf","rows":30,"time":2}` + "\n" + "[2, \"o\", \"é!\"]\n[3,\"r\",{\"cols\":90,\"rows\":20}]\n"
	if got != want {
		t.Fatalf("live stream %q, want %q", got, want)
	}
}

func TestTranscript(t *testing.T) {
	var b strings.Builder
	c := New(&b, Session{ID: "s4", User: "bob", Target: "pg", Type: "postgres", StartedAt: t0})
	ms := time.Millisecond
	for _, e := range []*event.Event{
		ev(event.SessionStart, 0, `{"user":"bob","target":"pg","target_type":"postgres","database":"app"}`, ""),
		ev(event.Query, ms, `{"text":"select $1","params":[{"text":"o'k"},{"null":true}]}`, ""),
		ev(event.Columns, 2*ms, `{"columns":[{"name":"a"}]}`, ""),
		{Type: event.Rows, Offset: 3 * ms, Data: []byte(`{}`), Raw: event.AppendRow(nil, [][]byte{[]byte("1")})},
		ev(event.Result, 4*ms, `{"tag":"SELECT 1","rows":1,"duration_ns":1500000}`, ""),
		ev(event.Error, 5*ms, `{"severity":"ERROR","message":"boom","hint":"h"}`, ""),
		ev(event.SessionEnd, 6*ms, `{"reason":"client_terminated","duration_ns":6000000}`, ""),
	} {
		c.Event(e)
	}
	c.Finish()
	hdr, evs := lines(t, b.String())
	if hdr["width"] != 120.0 || len(evs) != 7 {
		t.Fatalf("%v %v", hdr, evs)
	}
	var text strings.Builder
	for _, e := range evs {
		text.WriteString(e[2].(string))
	}
	for _, want := range []string{"app=> select $1\r\n-- parameters: 'o''k', NULL\r\n", "a\r\n-\r\n", "1\r\n", "(1 rows)\r\nTime: 1.500 ms",
		"ERROR:  boom\r\nHINT:  h\r\n", "session ended (client_terminated) after 6ms"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("transcript lacks %q:\n%q", want, text.String())
		}
	}
}

// A transcript quotes what the audited user sent and the target answered: a control there is
// written as an escape, so that a player (asciinema play in a terminal) shows it and does not
// obey it.
func TestTranscriptWritesControlsAsEscapes(t *testing.T) {
	var b strings.Builder
	c := New(&b, Session{ID: "s5", User: "bob", Target: "pg", Type: "postgres", StartedAt: t0})
	ms := time.Millisecond
	for _, e := range []*event.Event{
		ev(event.Query, ms, `{"text":"drop table t /*\r\u001b[Kselect 1 */"}`, ""),
		ev(event.Columns, 2*ms, `{"columns":[{"name":"a"}]}`, ""),
		{Type: event.Rows, Offset: 3 * ms, Data: []byte(`{}`), Raw: event.AppendRow(nil, [][]byte{[]byte("\x1b]52;c;eA==\x07")})},
		ev(event.Error, 5*ms, `{"severity":"ERROR","message":"\u001b[2J"}`, ""),
	} {
		c.Event(e)
	}
	c.Finish()
	_, evs := lines(t, b.String())
	var text strings.Builder
	for _, e := range evs {
		text.WriteString(e[2].(string))
	}
	for _, want := range []string{`pg=> drop table t /*\r\x1b[Kselect 1 */`, `\x1b]52;c;eA==\x07`, `ERROR:  \x1b[2J`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("transcript lacks %s:\n%q", want, text.String())
		}
	}
	if strings.ContainsAny(text.String(), "\x1b\x07") || strings.Contains(strings.ReplaceAll(text.String(), "\r\n", ""), "\r") {
		t.Errorf("transcript holds recorded controls:\n%q", text.String())
	}
}
