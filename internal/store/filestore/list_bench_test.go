package filestore

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/target"
)

// The web UI's sessions list must answer in under 300 ms with 100,000 sessions in the store
// (issue 7). seedSessions writes that history straight into the index in one transaction: going
// through Create and End would cost two durable commits per session, minutes for the seed,
// while what is measured here is only the list. Every session gets the searchable text of a
// statement, as End writes it; one in 1,000 ran a statement with the word "kumquat".
func seedSessions(t testing.TB, s *Store, n int) time.Time {
	t.Helper()
	ctx := context.Background()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO sessions (id, user, target, type, client_addr, started_at, ended_at, end_reason, events, head, path)
		VALUES (?, ?, ?, ?, '10.0.0.1:5000', ?, ?, 'client_terminated', 12, '', ?)`)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := tx.PrepareContext(ctx, `INSERT INTO session_text (session_id, text) VALUES (?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("s%07d", i)
		at := start.Add(time.Duration(i) * time.Minute)
		var ended any = at.Add(5 * time.Minute).UnixNano()
		if i%5000 == 0 {
			ended = nil // a few still run
		}
		typ := "postgres"
		if i%3 == 0 {
			typ = "ssh"
		}
		if _, err := ins.ExecContext(ctx, id, fmt.Sprintf("user%02d", i%50), fmt.Sprintf("db%02d", i%20), typ,
			at.UnixNano(), ended, "recordings/"+id+".alr"); err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprintf("select * from orders where customer_id = %d\nupdate accounts set seen = now() where id = %d", i, i)
		if i%1000 == 0 {
			text += "\nselect name from kumquat_inventory"
		}
		if _, err := txt.ExecContext(ctx, id, text); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return start
}

// listServer is the API over s, with an auditor's token (an auditor lists everyone's sessions).
func listServer(t testing.TB, s *Store) (http.Handler, string) {
	t.Helper()
	hash, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{{Name: "carol", PasswordHash: hash, Role: auth.RoleAuditor}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := svc.Login(context.Background(), "carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := svc.IssueToken(id)
	if err != nil {
		t.Fatal(err)
	}
	srv := &api.Server{Store: s, Auth: svc, Policy: &policy.Engine{}, Targets: &target.Catalog{Static: map[string]target.Target{}, Store: s}}
	return srv.Handler(), tok
}

// listQueries are the sessions list's calls the UI makes: the first page, the next one, and
// each filter.
func listQueries(start time.Time) []string {
	mid := start.Add(50000 * time.Minute)
	return []string{
		"limit=50",
		"limit=50&before=" + fmt.Sprint(start.Add(60000*time.Minute).UnixNano()) + "_s0060000",
		"limit=50&user=user07",
		"limit=50&target=db03&type=ssh",
		"limit=50&status=active",
		"limit=50&q=kumquat",
		"limit=50&q=customer_id%20%3D%2012345",
		"limit=50&from=" + mid.Format(time.RFC3339) + "&to=" + mid.Add(24*time.Hour).Format(time.RFC3339),
		"limit=50&user=user07&q=kumquat",
	}
}

func get(t testing.TB, h http.Handler, tok, q string) time.Duration {
	t.Helper()
	req := httptest.NewRequest("GET", "/api/v1/sessions?"+q, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rw := httptest.NewRecorder()
	t0 := time.Now()
	h.ServeHTTP(rw, req)
	d := time.Since(t0)
	if rw.Code != 200 {
		t.Fatalf("GET /api/v1/sessions?%s: %d %s", q, rw.Code, rw.Body)
	}
	return d
}

// TestSessionsList100k runs each list call the UI makes with 100,000 sessions in the embedded
// store and logs its median of 5 (the budget is 300 ms); every call must answer 200.
func TestSessionsList100k(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	start := seedSessions(t, s, 100_000)
	t.Logf("seeded 100,000 sessions in %v", time.Since(t0).Round(time.Millisecond))
	h, tok := listServer(t, s)
	for _, q := range listQueries(start) {
		var ds []time.Duration
		for range 5 {
			ds = append(ds, get(t, h, tok, q))
		}
		slices.Sort(ds)
		t.Logf("GET /api/v1/sessions?%s: median %v, max %v", q, ds[2].Round(time.Microsecond), ds[4].Round(time.Microsecond))
		// The 300 ms budget is measured and reported (docs/benchmarks.md), not asserted: a
		// timing assertion fails on a loaded machine without saying anything about the code.
	}
}

// BenchmarkSessionsList100k times the same calls: go test -run '^$' -bench SessionsList100k
// ./internal/store/filestore
func BenchmarkSessionsList100k(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := seedSessions(b, s, 100_000)
	h, tok := listServer(b, s)
	for _, q := range listQueries(start) {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				get(b, h, tok, q)
			}
		})
	}
}
