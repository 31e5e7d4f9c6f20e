package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRecordingIntegrityAndListing(t *testing.T) {
	g := startGateway(t, gwConfig{
		Targets: []targetCfg{
			{Name: "pg", Address: pgAddr, Database: "test"},
			{Name: "pg2", Address: pgAddr, Database: "postgres"},
		},
	})
	ctx := context.Background()
	before := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond) // a window that ends before the sessions exist

	appA, appB := uniq("rec_alice"), uniq("rec_bob")
	a := g.connect(t, "alice", alicePassword, "pg", appA)
	for _, q := range []string{"select 1", "select 'a'||g from generate_series(1,50) g", "select * from e2e_rec_missing"} {
		a.Exec(ctx, q)
	}
	if _, err := a.Exec(ctx, "do $$ begin raise notice 'e2e-notice'; end $$"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	b := g.connect(t, "bob", bobPassword, "pg2", appB)
	if _, err := b.Exec(ctx, "select 2"); err != nil {
		t.Fatal(err)
	}
	b.Close(ctx)

	sa, evA := g.waitSession(t, appA) // waitSession checks the chain
	sb, evB := g.waitSession(t, appB)
	after := time.Now().UTC().Add(time.Second)

	// Every event type the session produced is there, in order.
	var types []string
	for _, e := range evA {
		types = append(types, e.Type)
	}
	joined := strings.Join(types, ",")
	for _, want := range []string{"session.start", "query", "columns", "rows", "result", "error", "notice", "session.end"} {
		if !strings.Contains(joined, want) {
			t.Errorf("alice's recording lacks a %s event: %s", want, joined)
		}
	}
	if ns := ofType(evA, "notice"); len(ns) != 1 || !strings.Contains(ns[0].str("message"), "e2e-notice") {
		t.Errorf("notice events %+v", ns)
	}
	end := endEvent(evA)
	if end == nil {
		t.Fatalf("alice's recording has no session.end")
	}
	if end.num("duration_ns") <= 0 || end.num("bytes_from_client") <= 0 || end.num("bytes_to_client") <= 0 {
		t.Errorf("session.end data %v: want duration and bytes each way", end.Data)
	}
	for _, e := range evA {
		if !e.Time.After(before) || e.Time.After(after) {
			t.Errorf("event seq %d time %v outside [%v, %v]", e.Seq, e.Time, before, after)
		}
	}
	start := evA[0]
	for _, k := range []string{"user", "role", "target", "client_addr"} {
		if start.str(k) == "" {
			t.Errorf("session.start lacks %s: %v", k, start.Data)
		}
	}
	if start.str("application_name") != appA {
		t.Errorf("session.start application_name %q, want %q", start.str("application_name"), appA)
	}
	if gs, _ := start.Data["groups"].([]any); len(gs) != 1 || gs[0] != "dba" {
		t.Errorf("session.start groups %v, want [dba]", start.Data["groups"])
	}

	// Passwords never reach the data dir (nor does any typed secret).
	if hits := filesContaining(t, g.DataDir, alicePassword, bobPassword, adminPassword, audPassword); len(hits) > 0 {
		t.Errorf("a password appears in files under data_dir: %v", hits)
	}

	admin := g.adminToken(t)
	has := func(ss []Session, id string) bool {
		for _, s := range ss {
			if s.ID == id {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name   string
		f      sessionFilter
		wantA  bool
		wantB  bool
		asUser string
	}{
		{"all", sessionFilter{}, true, true, "admin"},
		{"window before", sessionFilter{From: before.Add(-time.Hour), To: before}, false, false, "admin"},
		{"window around", sessionFilter{From: before, To: after}, true, true, "admin"},
		{"window after", sessionFilter{From: after, To: after.Add(time.Hour)}, false, false, "admin"},
		{"user alice", sessionFilter{User: "alice"}, true, false, "admin"},
		{"user bob", sessionFilter{User: "bob"}, false, true, "admin"},
		{"target pg", sessionFilter{Target: "pg"}, true, false, "admin"},
		{"target pg2", sessionFilter{Target: "pg2"}, false, true, "admin"},
		{"alice sees her own only", sessionFilter{}, true, false, "alice"},
		{"alice cannot ask for bob's", sessionFilter{User: "bob"}, false, false, "alice"},
		{"bob sees his own only", sessionFilter{}, false, true, "bob"},
		{"auditor sees all", sessionFilter{}, true, true, "audrey"},
	}
	pw := map[string]string{"admin": adminPassword, "alice": alicePassword, "bob": bobPassword, "audrey": audPassword}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := g.token(t, tt.asUser, pw[tt.asUser])
			if tt.asUser == "admin" {
				tok = admin
			}
			ss := g.sessions(t, tok, tt.f)
			if has(ss, sa.ID) != tt.wantA || has(ss, sb.ID) != tt.wantB {
				t.Errorf("as %s %s: alice's listed=%v (want %v), bob's listed=%v (want %v)",
					tt.asUser, tt.f.query(), has(ss, sa.ID), tt.wantA, has(ss, sb.ID), tt.wantB)
			}
			if tt.asUser == "alice" || tt.asUser == "bob" {
				for _, s := range ss {
					if s.User != tt.asUser {
						t.Errorf("%s sees %s's session %s", tt.asUser, s.User, s.ID)
					}
				}
			}
		})
	}
	for _, s := range []Session{sa, sb} {
		if !s.ended() || s.StartedAt.IsZero() || s.EndedAt.Before(s.StartedAt) {
			t.Errorf("session %s times %v..%v", s.ID, s.StartedAt, s.EndedAt)
		}
		if s.Type != "postgres" {
			t.Errorf("session %s type %q, want postgres", s.ID, s.Type)
		}
	}

	// Events of another user's session are refused; the auditor's are not.
	code, body := g.api(t, g.token(t, "alice", alicePassword), "GET", "/api/v1/sessions/"+url.PathEscape(sb.ID)+"/events", nil)
	if code != 403 && code != 404 {
		t.Errorf("alice reading bob's events: HTTP %d %s, want 403 or 404", code, clip(string(body), 300))
	}
	if ev := g.events(t, g.token(t, "audrey", audPassword), sb.ID); len(ev) != len(evB) {
		t.Errorf("auditor sees %d events of bob's session, admin %d", len(ev), len(evB))
	}
	code, _ = g.api(t, "", "GET", "/api/v1/sessions", nil)
	if code != 401 {
		t.Errorf("GET /api/v1/sessions without a token: HTTP %d, want 401", code)
	}
	code, _ = g.api(t, "", "POST", "/api/v1/auth/login", map[string]string{"username": "alice", "password": "wrong"})
	if code != 401 {
		t.Errorf("login with a wrong password: HTTP %d, want 401", code)
	}
	// No update or delete path exists for recordings.
	for _, m := range []string{"DELETE", "PUT", "PATCH"} {
		code, _ := g.api(t, admin, m, "/api/v1/sessions/"+url.PathEscape(sa.ID), nil)
		if code >= 200 && code < 300 {
			t.Errorf("%s /api/v1/sessions/%s answered %d", m, sa.ID, code)
		}
	}
	if again := g.events(t, admin, sa.ID); len(again) != len(evA) || again[len(again)-1].Hash != evA[len(evA)-1].Hash {
		t.Errorf("recording changed after DELETE/PUT/PATCH attempts")
	}
}
