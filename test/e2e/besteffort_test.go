package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestBestEffortStoreStall runs a best-effort target on a gateway whose store is PostgreSQL and
// stalls that store for real: a test connection holds an exclusive lock on its events table, so
// the gateway's inserts wait. The session goes on, the events that do not fit in the (small)
// buffer are dropped, and their count shows as dropped_events in the API while the session
// runs. Once the lock is released and the session ended, the same count is in the index, in
// session.end, in the recording.gap events and in airlock_events_dropped_total, and the chain
// is whole.
func TestBestEffortStoreStall(t *testing.T) {
	requirePostgres(t)
	db := uniq("airlock_beff")
	ensureDatabase(t, db)
	t.Cleanup(func() { // after the gateway stopped (cleanups run last-in first-out)
		c := directConn(t, "postgres")
		c.Exec(context.Background(), "drop database if exists "+pgx.Identifier{db}.Sanitize()+" with (force)")
	})
	g := startGateway(t, gwConfig{
		Targets: []targetCfg{{Name: "pg", Address: pgAddr, Database: "test", TLS: "disable",
			Raw: "    recording:\n      mode: best-effort\n"}},
		Extra: fmt.Sprintf("store: %s\nrecording:\n  best_effort_buffer: 4096\n",
			yq("postgres://postgres@127.0.0.1:5432/"+db+"?sslmode=disable")),
	})
	app := uniq("beff")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	query := func() {
		t.Helper()
		var s string
		if err := c.QueryRow(ctx, "select repeat('x', 300)").Scan(&s); err != nil || len(s) != 300 {
			t.Fatalf("query through the gateway: %q, %v", s, err)
		}
	}
	query()
	id := g.waitSessions(t, app, 1, false)[0].ID
	tok := g.token(t, "alice", alicePassword) // logins are audited: log in before the stall
	session := func() map[string]any {
		t.Helper()
		code, body := g.api(t, tok, "GET", "/api/v1/sessions/"+url.PathEscape(id), nil)
		var r struct {
			Session map[string]any `json:"session"`
		}
		if code != 200 || json.Unmarshal(body, &r) != nil {
			t.Fatalf("GET session %s: HTTP %d: %s", id, code, clip(string(body), 2000))
		}
		return r.Session
	}
	if d, ok := session()["dropped_events"]; !ok || d != 0.0 {
		t.Fatalf("dropped_events before the stall = %v (present %v), want 0", d, ok)
	}

	// Stall the store. The index (sessions) stays writable; only event inserts wait.
	lock := directConn(t, db)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "lock table airlock.events in access exclusive mode"); err != nil {
		t.Fatal(err)
	}
	for range 100 { // each is query, rows and result events: far more than 4 KiB
		query()
	}
	var running float64
	deadline := time.Now().Add(20 * time.Second) // well within the store's 30 s write timeout
	for {
		s := session()
		if s["status"] != "active" {
			t.Fatalf("session %s not active during the stall: %v", id, s)
		}
		if running, _ = s["dropped_events"].(float64); running > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dropped_events in the API while the store stalls: %v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("dropped_events while running: %v", running)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	query() // kept again, behind a recording.gap
	c.Close(ctx)

	s, ev := g.waitSession(t, app) // checks the chain
	var final float64
	deadline = time.Now().Add(20 * time.Second)
	for {
		final, _ = session()["dropped_events"].(float64)
		if final >= running || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	end := endEvent(ev)
	if end == nil {
		t.Fatalf("no session.end in %s", s.ID)
	}
	gaps := sumNum(ev, "recording.gap", "events")
	if final < running || int64(final) != end.num("dropped_events") || int64(final) != gaps {
		t.Fatalf("dropped_events: %v in the index at the end (%v while running), %d in session.end, %d in recording.gap events",
			final, running, end.num("dropped_events"), gaps)
	}
	if m := droppedMetric(t, g); m != final {
		t.Fatalf("airlock_events_dropped_total = %v, want %v", m, final)
	}
}

var droppedMetricLine = regexp.MustCompile(`(?m)^airlock_events_dropped_total\{protocol="postgres",target="pg"\} (\S+)$`)

// droppedMetric reads airlock_events_dropped_total of target pg from /metrics.
func droppedMetric(t *testing.T, g *gateway) float64 {
	t.Helper()
	resp, err := http.Get(g.apiURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	m := droppedMetricLine.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no airlock_events_dropped_total for pg in /metrics")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
