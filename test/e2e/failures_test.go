package e2e

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t testing.TB) int { return freePort(t) }

func TestConnectErrors(t *testing.T) {
	psql := requireTool(t, "psql")
	down := closedPort(t)
	g := startGateway(t, gwConfig{
		Users: append(defaultUsers(), userCfg{Name: "carol", Password: "e2e-carol-Pw-0b1d", Role: "user"}),
		Targets: []targetCfg{
			{Name: "pg", Address: pgAddr, Database: "test"},
			{Name: "down", Address: fmt.Sprintf("127.0.0.1:%d", down), Database: "test"},
		},
		Policies: []policyCfg{
			{Name: "dba-all", Subjects: []string{"group:dba"}, Targets: []string{"*"}, Access: "allow"},
			{Name: "bob-pg", Subjects: []string{"user:bob"}, Targets: []string{"pg"}, Access: "allow"},
		},
	})
	tests := []struct {
		name, user, password, db string
		code                     string
		psqlMsg                  *regexp.Regexp // what psql shows the user
	}{
		{"wrong password", "alice", "not-the-password-e2e", "pg", "28P01", regexp.MustCompile(`(?i)password`)},
		{"unknown user", "mallory", "whatever-e2e", "pg", "28P01", regexp.MustCompile(`(?i)password|authentication`)},
		{"unknown target", "alice", alicePassword, "nosuchtarget", "3D000", regexp.MustCompile(`(?i)nosuchtarget`)},
		{"policy denies (no rule)", "carol", "e2e-carol-Pw-0b1d", "pg", "42501", regexp.MustCompile(`(?i)not allowed|denied|permission|polic`)},
		{"policy denies (other target)", "bob", bobPassword, "down", "42501", regexp.MustCompile(`(?i)not allowed|denied|permission|polic`)},
		{"target down", "alice", alicePassword, "down", "08001", regexp.MustCompile(`(?i)down|unreachable|connect|refused|unavailable`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// sslmode=require: one attempt, so the error is the gateway's answer to it.
			c, err := pgx.Connect(ctx, g.dsn(tt.user, tt.password, tt.db, "e2e_err", "sslmode=require"))
			if err == nil {
				c.Close(ctx)
				t.Fatalf("connect succeeded, want SQLSTATE %s", tt.code)
			}
			if code := pgErrCode(err); code != tt.code {
				t.Errorf("pgx: SQLSTATE %q (%v), want %s", code, err, tt.code)
			}
			// psql with libpq's defaults (sslmode=prefer).
			r := run(30*time.Second, g.psqlEnv(tt.user, tt.password, tt.db, "e2e_err_psql"), nil, psql, "-X", "-c", "select 1")
			if r.Code != 2 {
				t.Errorf("psql exit %d, want 2 (connection failed): %s", r.Code, r)
			}
			if !tt.psqlMsg.MatchString(r.Stderr) {
				t.Errorf("psql stderr %q does not match %v", r.Stderr, tt.psqlMsg)
			}
			t.Logf("psql said: %s", strings.TrimSpace(r.Stderr))
		})
	}
	// The allowed paths still work with the same config.
	g.connect(t, "bob", bobPassword, "pg", "e2e_ok").Close(context.Background())
	// Passwords typed by clients, right or wrong, are never stored.
	if hits := filesContaining(t, g.DataDir, "not-the-password-e2e", "whatever-e2e", "e2e-carol-Pw-0b1d", alicePassword, bobPassword, adminPassword); len(hits) > 0 {
		t.Errorf("a password appears in %v", hits)
	}
}

func TestClientDisconnectMidResult(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("client_disconnect")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	rows, err := c.Query(ctx, "select g, repeat('x', 200) from generate_series(1, 20000000) g")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
		if n == 5000 {
			break
		}
	}
	if n != 5000 {
		t.Fatalf("read %d rows before the disconnect: %v", n, rows.Err())
	}
	// Drop the socket without Terminate, as a killed client would.
	c.PgConn().Conn().Close()

	s, ev := g.waitSession(t, app)
	if r := endReason(ev); r != "client_disconnected" {
		t.Errorf("end reason %q, want client_disconnected (end event %v)", r, ev[len(ev)-1].Data)
	}
	if !s.ended() {
		t.Errorf("session not listed as ended: %+v", s)
	}
	mustQuery(t, ev, "generate_series(1, 20000000)")
	// The upstream query must not run on: the gateway closes its backend.
	dc := directConn(t, "postgres")
	deadline := time.Now().Add(15 * time.Second)
	for {
		var k int
		if err := dc.QueryRow(ctx, "select count(*) from pg_stat_activity where application_name = $1", app).Scan(&k); err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("upstream backend of %s still in pg_stat_activity 15s after the client went away", app)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestUpstreamDisconnectMidResult(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("upstream_disconnect")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	dc := directConn(t, "postgres")
	rows, err := c.Query(ctx, "select g, repeat('y', 200) from generate_series(1, 20000000) g")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < 1000 && rows.Next() {
		n++
	}
	if n != 1000 {
		t.Fatalf("read %d rows: %v", n, rows.Err())
	}
	// The gateway passes application_name upstream; find its backend and kill it.
	var killed int
	if err := dc.QueryRow(ctx, `select count(pg_terminate_backend(pid)) from pg_stat_activity
		where application_name = $1 and pid <> pg_backend_pid()`, app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d backends with application_name %s, want 1 (is application_name passed upstream?)", killed, app)
	}
	var more atomic.Int64
	done := make(chan error, 1)
	go func() {
		for rows.Next() {
			more.Add(1)
		}
		rows.Close()
		done <- rows.Err()
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("result ended without error after the upstream backend was terminated (%d more rows)", more.Load())
		} else {
			t.Logf("client got: %v (code %q) after %d more rows", err, pgErrCode(err), more.Load())
		}
	case <-time.After(30 * time.Second):
		c.PgConn().Conn().Close()
		t.Fatalf("client hangs 30s after the upstream backend was terminated (%d more rows)", more.Load())
	}
	if err := c.Ping(ctx); err == nil {
		t.Errorf("connection still answers after its upstream died")
	}

	s, ev := g.waitSession(t, app)
	if r := endReason(ev); r != "upstream_closed" && r != "error" {
		t.Errorf("end reason %q, want upstream_closed or error", r)
	}
	if !s.ended() {
		t.Errorf("session not listed as ended: %+v", s)
	}
	var sawTermination bool
	for _, e := range ofType(ev, "error") {
		sawTermination = sawTermination || e.str("code") == "57P01"
	}
	if !sawTermination {
		t.Logf("note: no error event with 57P01 recorded (errors: %+v)", ofType(ev, "error"))
	}
}

func TestSessionEndsWhenGatewayConnIsIdleAndClientVanishes(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("idle_vanish")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.PGPort))
	if err != nil {
		t.Fatal(err)
	}
	// Half a startup packet, then gone: no session is created and the gateway stays healthy.
	conn.Write([]byte{0, 0, 0, 40, 0, 3})
	conn.Close()
	c := g.connect(t, "alice", alicePassword, "pg", app)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.PgConn().Conn().Close()
	_, ev := g.waitSession(t, app)
	if r := endReason(ev); r != "client_disconnected" {
		t.Errorf("end reason %q, want client_disconnected", r)
	}
}
