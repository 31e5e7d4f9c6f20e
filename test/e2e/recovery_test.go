package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestKillDuringStreamingResult kills the gateway with SIGKILL while pgx streams a large result,
// restarts it on the same data directory and checks crash recovery: the session is listed as
// ended "interrupted", its recording verifies intact (chain and signatures), and every row the
// client received is in it. Once with the embedded store, once with `store: postgres://` (a
// database of its own on the machine's PostgreSQL, dropped afterwards).
func TestKillDuringStreamingResult(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { killDuringStreamingResult(t, gwConfig{}) })
	t.Run("psql", killPsqlDuringStreamingResult)
	t.Run("postgres_store", func(t *testing.T) {
		db := uniq("airlock_store")
		ensureDatabase(t, db)
		t.Cleanup(func() {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, directDSN("postgres"))
			if err == nil {
				_, err = c.Exec(ctx, "drop database if exists "+pgx.Identifier{db}.Sanitize()+" with (force)")
				c.Close(ctx)
			}
			if err != nil {
				t.Logf("drop %s: %v", db, err)
			}
		})
		id, events := killDuringStreamingResult(t, gwConfig{Extra: "store: " + yq("postgres://postgres@"+pgAddr+"/"+db+"?sslmode=disable") + "\n"})
		var n int
		var reason string
		c := directConn(t, db)
		if err := c.QueryRow(context.Background(), "select (select count(*) from airlock.events where session_id = $1), end_reason from airlock.sessions where id = $1", id).Scan(&n, &reason); err != nil {
			t.Fatalf("the recording is not in the PostgreSQL store: %v", err)
		}
		if n != events || reason != "interrupted" {
			t.Fatalf("the PostgreSQL store holds %d events ending %q; the API gave %d", n, reason, events)
		}
	})
}

func killDuringStreamingResult(t *testing.T, cfg gwConfig) (session string, events int) {
	g := startGateway(t, cfg)
	app := uniq("kill9")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := c.Query(ctx, "select g::text, repeat('k', 200) from generate_series(1, 20000000) g")
	if err != nil {
		t.Fatal(err)
	}
	received := 0 // rows are numbered 1, 2, 3, ...: received is also the highest seen
	killed := false
	for rows.Next() {
		var s, pad string
		if err := rows.Scan(&s, &pad); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(s)
		if n != received+1 {
			t.Fatalf("row %d after %d", n, received)
		}
		received = n
		if received == 50000 && !killed {
			// Keep reading afterwards: what the kernel already delivered still reaches us.
			if _, exited := g.signal(syscall.SIGKILL, 10*time.Second); !exited {
				t.Fatal("gateway did not die on SIGKILL")
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("the result ended after %d rows before the kill: %v", received, rows.Err())
	}
	if rows.Err() == nil {
		t.Fatalf("the result completed after the gateway was killed (%d rows)", received)
	}
	c.Close(context.Background())
	t.Logf("client received %d rows; the gateway was killed after row 50000", received)

	g.start(t) // same config, same data dir: crash recovery runs before the listeners open
	s, ev := g.waitSession(t, app)
	if s.EndReason != "interrupted" || endReason(ev) != "interrupted" {
		t.Errorf("session end_reason %q, session.end reason %q; want interrupted", s.EndReason, endReason(ev))
	}
	requireRowsRecorded(t, ev, received)
	code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/sessions/"+url.PathEscape(s.ID)+"/verify", nil)
	var res struct {
		Intact      bool  `json:"intact"`
		Events      int   `json:"events"`
		Checkpoints int   `json:"checkpoints"`
		Findings    []any `json:"findings"`
	}
	if code != 200 || json.Unmarshal(body, &res) != nil || !res.Intact || res.Events != len(ev) || res.Checkpoints < 1 {
		t.Fatalf("verify after recovery: HTTP %d %s", code, clip(string(body), 2000))
	}
	// The CLI agrees, through the gateway and offline on an export; an edited export fails.
	dir := t.TempDir()
	env := append(cleanEnv(), "HOME="+dir, "AIRLOCK_GATEWAY="+g.apiURL(), "AIRLOCK_TOKEN="+g.adminToken(t))
	if r := run(time.Minute, env, nil, airlockBin, "verify", s.ID); r.Code != 0 {
		t.Errorf("airlock verify: %s", r)
	}
	file := filepath.Join(dir, "s.jsonl")
	if r := run(time.Minute, env, nil, airlockBin, "export", s.ID, "-o", file); r.Code != 0 {
		t.Fatalf("airlock export: %s", r)
	}
	offline := append(cleanEnv(), "HOME="+dir) // no gateway
	if r := run(time.Minute, offline, nil, airlockBin, "verify", "--file", file, "--public-key", file+".pub"); r.Code != 0 {
		t.Errorf("airlock verify --file: %s", r)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"reason":"interrupted"`, `"reason":"client_terminated"`, 1)
	if edited == string(b) {
		t.Fatalf("export has no interrupted session.end")
	}
	os.WriteFile(file, []byte(edited), 0o644)
	if r := run(time.Minute, offline, nil, airlockBin, "verify", "--file", file, "--public-key", file+".pub"); r.Code != 1 || !strings.Contains(r.Stdout, "altered") {
		t.Errorf("airlock verify --file of an edited export: %s", r)
	}
	// asciicast plays the rows the client saw.
	if r := run(time.Minute, env, nil, airlockBin, "export", s.ID, "--format", "asciicast"); r.Code != 0 || !strings.Contains(r.Stdout, `"version":2`) || !strings.Contains(r.Stdout, "50000 | kkkk") {
		t.Errorf("airlock export --format asciicast: code %d, %s", r.Code, clip(r.Stdout, 500))
	}
	// A second restart has nothing left to recover, and changes nothing.
	g.stop()
	g.start(t)
	if again := g.events(t, g.adminToken(t), s.ID); len(again) != len(ev) || again[len(again)-1].Hash != ev[len(ev)-1].Hash {
		t.Errorf("the recording changed on the next start: %d events, was %d", len(again), len(ev))
	}
	return s.ID, len(ev)
}

// killPsqlDuringStreamingResult is the same proof with psql, which with FETCH_COUNT prints each
// batch of a cursor as it arrives: every line it printed before the gateway died must be a row
// in the recording.
func killPsqlDuringStreamingResult(t *testing.T) {
	requireTool(t, "psql")
	g := startGateway(t, gwConfig{})
	app := uniq("kill9_psql")
	cmd := exec.Command("psql", "-X", "-At", "-v", "FETCH_COUNT=1000", "-c",
		"select g, repeat('k', 200) from generate_series(1, 20000000) g")
	cmd.Env = g.psqlEnv("alice", alicePassword, "pg", app)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	received, killed := 0, false
	for sc.Scan() {
		n, err := strconv.Atoi(strings.SplitN(sc.Text(), "|", 2)[0])
		if err != nil || n != received+1 {
			t.Fatalf("line %q after row %d", clip(sc.Text(), 80), received)
		}
		received = n
		if received == 50000 && !killed {
			if _, exited := g.signal(syscall.SIGKILL, 10*time.Second); !exited {
				t.Fatal("gateway did not die on SIGKILL")
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed || werr == nil {
		t.Fatalf("psql printed %d rows, killed %v, exit %v, stderr %s", received, killed, werr, stderr.String())
	}
	t.Logf("psql printed %d rows; the gateway was killed after row 50000; psql said %q", received, strings.TrimSpace(stderr.String()))

	g.start(t)
	s, ev := g.waitSession(t, app)
	if s.EndReason != "interrupted" {
		t.Errorf("session end_reason %q, want interrupted", s.EndReason)
	}
	requireRowsRecorded(t, ev, received)
	code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/sessions/"+url.PathEscape(s.ID)+"/verify", nil)
	var res struct {
		Intact bool `json:"intact"`
	}
	if code != 200 || json.Unmarshal(body, &res) != nil || !res.Intact {
		t.Fatalf("verify after recovery: HTTP %d %s", code, clip(string(body), 2000))
	}
}

// requireRowsRecorded fails unless rows 1..received of the kill tests' query (a number, then
// padding) are all in the recording's rows events.
func requireRowsRecorded(t *testing.T, ev []Event, received int) {
	t.Helper()
	recorded := map[string]bool{}
	for _, e := range ofType(ev, "rows") {
		for _, r := range e.Rows {
			var vals []any
			if err := json.Unmarshal(r, &vals); err != nil || len(vals) != 2 {
				t.Fatalf("row %s: %v", r, err)
			}
			v, _ := vals[0].(string)
			recorded[v] = true
		}
	}
	for n := 1; n <= received; n++ {
		if !recorded[strconv.Itoa(n)] {
			t.Fatalf("row %d reached the client but is not in the recording (%d rows recorded)", n, len(recorded))
		}
	}
}
