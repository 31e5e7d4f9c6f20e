package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/sealbox"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

type harness struct {
	srv   *api.Server
	url   string
	st    *apitest.Store
	auth  *auth.Service
	vars  map[string]string
	stdin string
	slept []time.Duration
	keys  *sealbox.Keyring
}

func j(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	hash, _ := auth.HashPassword("pw")
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{
		{Name: "alice", PasswordHash: hash, Role: auth.RoleUser, Groups: []string{"dba"}},
		{Name: "root", PasswordHash: hash, Role: auth.RoleAdmin},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := apitest.New()
	srv := &api.Server{Store: st, Auth: svc, Policy: &policy.Engine{},
		Targets: &target.Catalog{Static: map[string]target.Target{"pg": {Name: "pg", Type: "postgres", Address: "127.0.0.1:5432", Database: "test", Password: "secret", Source: "config"}}, Store: st}}
	keys, _ := sealbox.New(bytes.Repeat([]byte{5}, sealbox.KeySize))
	srv.Sealer = keys
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	rec := &apitest.Recording{ID: "s1", Start: t0}
	rec.Add(event.SessionStart, 0, j(event.SessionStartData{User: "alice", Role: "user", Target: "pg", TargetType: "postgres", ClientAddr: "127.0.0.1:50000", ApplicationName: "psql", TLS: true, TLSVersion: "1.3"}), nil)
	rec.Add(event.Query, 1234*time.Millisecond, j(event.QueryData{Text: "select id, name from t", Protocol: "simple"}), nil)
	rec.Add(event.Columns, 1240*time.Millisecond, j(event.ColumnsData{Columns: []event.Column{{Name: "id", OID: 23, Format: 1}, {Name: "name", OID: 25}}}), nil)
	var raw []byte
	for i := int32(1); i <= 3; i++ {
		raw = event.AppendRow(raw, [][]byte{binary.BigEndian.AppendUint32(nil, uint32(i*10)), []byte(strings.Repeat("x", int(i)))})
	}
	raw = event.AppendRow(raw, [][]byte{binary.BigEndian.AppendUint32(nil, 4), nil})
	rec.Add(event.Rows, 1250*time.Millisecond, j(event.RowsData{Count: 4}), raw)
	rec.Add(event.Result, 1260*time.Millisecond, j(event.ResultData{Tag: "SELECT 4", Rows: 4, DurationNS: 2e6}), nil)
	one := "1"
	rec.Add(event.Query, 2*time.Second, j(event.QueryData{Text: "select * from nope where a = $1", Protocol: "extended", Params: []event.Value{{Text: &one}, {Null: true}}}), nil)
	rec.Add(event.Error, 2001*time.Millisecond, j(event.MessageData{Severity: "ERROR", Code: "42P01", Message: `relation "nope" does not exist`, Source: "target"}), nil)
	rec.Add(event.CopyOut, 2500*time.Millisecond, j(event.CopyData{Bytes: 2048}), bytes.Repeat([]byte("a"), 2048))
	rec.Add(event.Cancel, 2600*time.Millisecond, j(event.CancelData{Delivered: true}), nil)
	rec.Add(event.SessionEnd, 3*time.Second, j(event.SessionEndData{Reason: "client_terminated", DurationNS: 3e9, BytesFromClient: 300, BytesToClient: 5000, Statements: 2}), nil)
	ended := t0.Add(3 * time.Second)
	st.Put(store.Session{ID: "s1", User: "alice", Target: "pg", Type: "postgres", ClientAddr: "127.0.0.1:50000", StartedAt: t0, EndedAt: &ended, EndReason: "client_terminated", DroppedEvents: 7}, rec.Evs)
	st.Put(store.Session{ID: "s2", User: "root", Target: "pg", Type: "postgres", StartedAt: t0.Add(time.Hour)}, nil)

	return &harness{srv: srv, keys: keys, url: ts.URL, st: st, auth: svc, vars: map[string]string{"XDG_CONFIG_HOME": t.TempDir()}}
}

func (h *harness) token(t *testing.T, user string) string {
	id, err := h.auth.Login(context.Background(), user, "pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := h.auth.IssueToken(id)
	return tok
}

// as points the commands at the test gateway with user's token, the way automation does.
func (h *harness) as(t *testing.T, user string) *harness {
	h.vars["AIRLOCK_GATEWAY"] = h.url
	h.vars["AIRLOCK_TOKEN"] = h.token(t, user)
	return h
}

func (h *harness) run(t *testing.T, run func(*env, []string) int, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(h.stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return h.vars[k] },
		http:   httptestClient(), now: func() time.Time { return t0.Add(24 * time.Hour) },
		sleep: func(ctx context.Context, d time.Duration) { h.slept = append(h.slept, d) }}
	code = run(e, args)
	return code, out.String(), errb.String()
}

func TestParseArgsInterspersed(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		pos   string
		speed float64
		json  bool
	}{
		{[]string{"ID", "--speed", "0"}, "ID", 0, false},
		{[]string{"--speed=2", "ID"}, "ID", 2, false},
		{[]string{"ID", "--json"}, "ID", 1, true},
		{[]string{"-json", "ID", "-speed", "3"}, "ID", 3, true},
		{[]string{"A", "B"}, "A,B", 1, false},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			speed := fs.Float64("speed", 1, "")
			js := fs.Bool("json", false, "")
			pos, err := parseArgs(fs, tt.args)
			if err != nil || strings.Join(pos, ",") != tt.pos || *speed != tt.speed || *js != tt.json {
				t.Fatalf("pos=%v speed=%v json=%v err=%v", pos, *speed, *js, err)
			}
		})
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	if _, err := parseArgs(fs, []string{"ID", "--nope"}); err == nil {
		t.Fatal("unknown flag after a positional accepted")
	}
}

func TestLoginSavesCredentials(t *testing.T) {
	h := newHarness(t)
	h.stdin = "pw\n"
	code, out, errOut := h.run(t, runLogin, "--gateway", h.url, "--user", "alice")
	if code != 0 || !strings.Contains(out, "as alice (role user, groups dba) until") {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
	p := filepath.Join(h.vars["XDG_CONFIG_HOME"], "airlock", "credentials.json")
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	if di, _ := os.Stat(filepath.Dir(p)); di.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode %v", di.Mode())
	}
	var c credentials
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &c); err != nil || c.Gateway != h.url || c.User != "alice" || !strings.HasPrefix(c.Token, "alt_") || c.ExpiresAt.IsZero() {
		t.Fatalf("saved %s", b)
	}
	// The saved token is used without any environment.
	code, out, errOut = h.run(t, runSessions, "list")
	if code != 0 || !strings.Contains(out, "s1") || strings.Contains(out, "s2") {
		t.Fatalf("list with saved credentials: %d\n%s\n%s", code, out, errOut)
	}

	h.stdin = "pw\n"
	code, out, _ = h.run(t, runLogin, "--gateway", h.url, "--user", "alice", "--print-token")
	if code != 0 || !strings.HasPrefix(out, "alt_") || strings.Count(out, "\n") != 1 {
		t.Fatalf("print-token: %d %q", code, out)
	}

	h.stdin = "wrong\n"
	code, _, errOut = h.run(t, runLogin, "--gateway", h.url, "--user", "alice")
	if code != 1 || !strings.Contains(errOut, "invalid user name or password") {
		t.Fatalf("bad password: %d %s", code, errOut)
	}
	if code, _, _ = h.run(t, runLogin, "--user", "alice", "extra"); code != 2 {
		t.Fatalf("usage: %d", code)
	}
}

// TestSavedTokenStaysWithItsGateway: AIRLOCK_GATEWAY naming another gateway than the saved
// login's does not send that login's token there (it did: a token of one gateway handed to
// whatever server the variable named). AIRLOCK_TOKEN still goes wherever it is pointed.
func TestSavedTokenStaysWithItsGateway(t *testing.T) {
	h := newHarness(t)
	h.stdin = "pw\n"
	if code, _, errOut := h.run(t, runLogin, "--gateway", h.url, "--user", "alice"); code != 0 {
		t.Fatalf("login: %d %s", code, errOut)
	}
	var mu sync.Mutex
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"missing bearer token","code":"unauthorized"}`))
	}))
	defer other.Close()
	h.vars["AIRLOCK_GATEWAY"] = other.URL
	code, _, errOut := h.run(t, runSessions, "list")
	mu.Lock()
	sent := slices.Clone(got)
	mu.Unlock()
	if len(sent) != 1 || sent[0] != "" {
		t.Fatalf("the other gateway got Authorization %q, want one request without any", sent)
	}
	if code != 1 || !strings.Contains(errOut, "the saved login is for "+h.url) {
		t.Fatalf("exit %d, stderr %q; want 1 and why no token was sent", code, errOut)
	}
	// The saved gateway named again (as typed, with a trailing slash) still gets the token.
	h.vars["AIRLOCK_GATEWAY"] = h.url + "/"
	if code, out, errOut := h.run(t, runSessions, "list"); code != 0 || !strings.Contains(out, "s1") {
		t.Fatalf("list at the saved gateway: %d %s %s", code, out, errOut)
	}
	// An explicit AIRLOCK_TOKEN is sent where AIRLOCK_GATEWAY points.
	h.vars["AIRLOCK_GATEWAY"], h.vars["AIRLOCK_TOKEN"] = other.URL, "alt_explicit"
	h.run(t, runSessions, "list")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[1] != "Bearer alt_explicit" {
		t.Fatalf("with AIRLOCK_TOKEN the other gateway got %q", got)
	}
}

func TestUnauthorizedMessage(t *testing.T) {
	h := newHarness(t)
	h.vars["AIRLOCK_GATEWAY"] = h.url
	h.vars["AIRLOCK_TOKEN"] = "alt_bogus.bogus"
	code, _, errOut := h.run(t, runSessions, "list")
	if code != 1 || !strings.Contains(errOut, "airlock: 401 unauthorized: ") || !strings.Contains(errOut, "(run airlock login)") {
		t.Fatalf("%d %s", code, errOut)
	}
	delete(h.vars, "AIRLOCK_GATEWAY")
	code, _, errOut = h.run(t, runSessions, "list")
	if code != 1 || !strings.Contains(errOut, "no gateway") {
		t.Fatalf("%d %s", code, errOut)
	}
}

func TestSessionsList(t *testing.T) {
	h := newHarness(t).as(t, "root")
	code, out, errOut := h.run(t, runSessions, "list")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID  USER   TARGET  TYPE      STARTED") || !strings.Contains(lines[0], "END REASON") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(lines[1], "s2") || !strings.Contains(lines[1], "active") ||
		!strings.Contains(lines[2], "s1") || !strings.Contains(lines[2], "3s") || !strings.Contains(lines[2], "client_terminated") {
		t.Fatalf("rows:\n%s", out)
	}
	// Columns line up.
	if strings.Index(lines[0], "TARGET") != strings.Index(lines[2], "pg") {
		t.Fatalf("not aligned:\n%s", out)
	}

	code, out, _ = h.run(t, runSessions, "list", "--user", "alice", "--json")
	var ans struct{ Sessions []map[string]any }
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || len(ans.Sessions) != 1 || ans.Sessions[0]["id"] != "s1" {
		t.Fatalf("json: %d %s", code, out)
	}
	// now is t0+24h: --to 23h30m means t0+30m, which only s1 started before.
	code, out, _ = h.run(t, runSessions, "list", "--to", "23h30m", "--json")
	if code != 0 || !strings.Contains(out, `"s1"`) || strings.Contains(out, `"s2"`) {
		t.Fatalf("relative --to: %d %s", code, out)
	}
	code, out, _ = h.run(t, runSessions, "list", "--from", "2026-03-01T10:30:00Z", "--json")
	if code != 0 || strings.Contains(out, `"s1"`) || !strings.Contains(out, `"s2"`) {
		t.Fatalf("absolute --from: %d %s", code, out)
	}
	if code, _, errOut = h.run(t, runSessions, "list", "--from", "yesterday"); code != 2 || !strings.Contains(errOut, "RFC 3339") {
		t.Fatalf("bad --from: %d %s", code, errOut)
	}
	if code, _, _ = h.run(t, runSessions, "frob"); code != 2 {
		t.Fatalf("unknown subcommand: %d", code)
	}
}

func TestSessionsShow(t *testing.T) {
	h := newHarness(t).as(t, "alice")
	code, out, errOut := h.run(t, runSessions, "show", "s1")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	for _, want := range []string{"Session:", "s1", "pg (postgres)", "client_terminated", "Statements:", "2", "Errors:", "1", "300 B from client, 4.9 KiB to client"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{`Rows returned: +4\n`, `Dropped events: +7\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("show lacks %s:\n%s", want, out)
		}
	}
	code, out, _ = h.run(t, runSessions, "show", "s1", "--json")
	var ans struct {
		Session map[string]any
		Summary summary
	}
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || ans.Session["id"] != "s1" || ans.Session["dropped_events"] != 7.0 || ans.Summary.Statements != 2 || ans.Summary.Errors != 1 {
		t.Fatalf("show --json: %d %s", code, out)
	}
	// Another user's session is simply not found.
	code, _, errOut = h.run(t, runSessions, "show", "s2")
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("s2 as alice: %d %s", code, errOut)
	}
}

func TestReplay(t *testing.T) {
	h := newHarness(t).as(t, "alice")
	code, out, errOut := h.run(t, runReplay, "s1", "--speed", "0", "--max-rows", "2")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	if len(h.slept) != 0 {
		t.Fatalf("--speed 0 waited: %v", h.slept)
	}
	want := `[+0.000s] session started`
	for _, w := range []string{
		want,
		"alice -> pg (postgres) from 127.0.0.1:50000 [role user, application psql, TLS 1.3]",
		"[+1.234s] query: select id, name from t",
		"     id | name\n    ----+------\n     10 | x\n     20 | xx\n    (2 more rows not shown; --max-rows 2)\n",
		"[+1.260s] SELECT 4 (4 rows, 2ms)",
		"[+2.000s] execute: select * from nope where a = $1\n             $1 = '1'\n             $2 = NULL\n",
		`[+2.001s] ERROR 42P01: relation "nope" does not exist`,
		"[+2.500s] COPY data to client: 2.0 KiB",
		"[+2.600s] cancel request (delivered)",
		"[+3.000s] session ended: client_terminated after 3s; 2 statements, 300 B from client, 4.9 KiB to client",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("replay lacks %q:\n%s", w, out)
		}
	}

	// Default speed waits per offset (clock injected: it does not advance, so each wait is
	// the whole offset).
	code, out, _ = h.run(t, runReplay, "s1", "--max-rows", "10")
	if code != 0 || len(h.slept) != 9 || h.slept[0] != 1234*time.Millisecond || h.slept[len(h.slept)-1] != 3*time.Second {
		t.Fatalf("waits: %v", h.slept)
	}
	if !strings.Contains(out, "      4 |\n") || strings.Contains(out, "not shown") {
		t.Fatalf("full table with NULL:\n%s", out)
	}
	h.slept = nil
	h.run(t, runReplay, "--speed", "2", "s1")
	if h.slept[0] != 617*time.Millisecond {
		t.Fatalf("speed 2: %v", h.slept)
	}
	if code, _, _ = h.run(t, runReplay); code != 2 {
		t.Fatalf("no id: %d", code)
	}
}

func TestReplayTornRecording(t *testing.T) {
	h := newHarness(t).as(t, "alice")
	h.st.EventsErr["s1"] = errors.New("segment 2: checksum mismatch")
	code, out, errOut := h.run(t, runReplay, "s1", "--speed", "0")
	if code != 1 || !strings.Contains(out, "session ended") || !strings.Contains(errOut, "checksum mismatch") {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
}

func TestDecodeEventStreamTruncated(t *testing.T) {
	_, err := decodeEventStream(strings.NewReader(`{"events":[{"seq":1,"type":"query"},{"seq":2`), func(*apiEvent) error { return nil })
	if err == nil {
		t.Fatal("a cut answer must be an error")
	}
}

func TestTargets(t *testing.T) {
	h := newHarness(t).as(t, "root")
	h.stdin = "hunter2\n"
	code, out, errOut := h.run(t, runTargets, "add", "pg2", "--address", "db:5432", "--username", "app", "--password-stdin", "--label", "env=prod")
	if code != 0 || !strings.Contains(out, "Registered target pg2 (postgres at db:5432)") {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	if tg, _ := h.st.GetTarget(context.Background(), "pg2"); tg.Password != "hunter2" || tg.Labels["env"] != "prod" {
		t.Fatalf("stored %+v", tg)
	}
	h.vars["PGPW"] = "s3"
	if code, _, errOut = h.run(t, runTargets, "add", "pg", "--address", "x:1", "--password-env", "PGPW"); code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("config name: %d %s", code, errOut)
	}
	if code, _, _ = h.run(t, runTargets, "add", "pg3"); code != 2 {
		t.Fatalf("missing address: %d", code)
	}
	code, out, _ = h.run(t, runTargets, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[1], "pg ") || !strings.Contains(lines[2], "pg2") || !strings.Contains(lines[2], "env=prod") || strings.Contains(out, "hunter2") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = h.run(t, runTargets, "list", "--json")
	if code != 0 || !strings.Contains(out, `"name": "pg2"`) || strings.Contains(out, "hunter2") || strings.Contains(out, "secret") {
		t.Fatalf("list --json: %s", out)
	}

	h.as(t, "alice")
	code, _, errOut = h.run(t, runTargets, "add", "pg4", "--address", "x:1")
	if code != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Fatalf("non-admin add: %d %s", code, errOut)
	}
}

func httptestClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

func TestSessionsHoldNeedsAdmin(t *testing.T) {
	h := newHarness(t)
	if code, _, errOut := h.as(t, "alice").run(t, runSessions, "hold", "s1", "--reason", "case 42"); code != 1 || !strings.Contains(errOut, "403") {
		t.Fatalf("alice: exit %d, stderr %q; want 1 and a 403", code, errOut)
	}
	code, out, errOut := h.as(t, "root").run(t, runSessions, "hold", "s1", "--reason", "case 42")
	if code != 0 || !strings.Contains(out, "legal hold") {
		t.Fatalf("admin hold: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = h.as(t, "root").run(t, runSessions, "release", "s1", "--json")
	if code != 0 || !strings.Contains(out, `"hold":false`) {
		t.Fatalf("admin release: exit %d, out %q", code, out)
	}
}
