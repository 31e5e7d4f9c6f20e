package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestUpstreamAuth proves the gateway's side of issue 2's "Upstream: SCRAM-SHA-256, MD5 and
// trust; TLS with verify-full available; the user never sees or needs the target's password"
// against a real server: a private cluster (pgcluster_test.go) with SCRAM and MD5 logins and TLS
// under a CA the test made. The server on :5432 only has trust, which the rest of the suite
// covers. One cluster and one gateway serve all the subtests.
func TestUpstreamAuth(t *testing.T) {
	requireBinary(t)
	pg := startPGCluster(t)

	scramPw := randSecret("e2e-scram-target-")
	md5Pw := randSecret("e2e-md5-target-")
	wrongPw := randSecret("e2e-wrong-target-")
	createTargetRoles(t, pg, scramPw, md5Pw)

	// The gateway's credentials: a file for scram_user (outside data_dir: the operator's file),
	// an environment variable for md5_user.
	secrets := t.TempDir()
	scramFile := filepath.Join(secrets, "scram.pw")
	wrongFile := filepath.Join(secrets, "wrong.pw")
	for f, pw := range map[string]string{scramFile: scramPw, wrongFile: wrongPw} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const md5Env = "E2E_UPSTREAM_MD5_TARGET_PW"
	t.Setenv(md5Env, md5Pw) // inherited by the gateway (cleanEnv keeps non-PG, non-AIRLOCK vars)

	addr := fmt.Sprintf("127.0.0.1:%d", pg.Port)
	g := startUpstreamGateway(t, []upstreamTarget{
		{Name: "scram", Address: addr, Username: "scram_user", PasswordFile: scramFile, TLS: "verify-full", CAFile: pg.CAFile},
		{Name: "md5", Address: addr, Username: "md5_user", PasswordEnv: md5Env, TLS: "disable"},
		{Name: "md5-prefer", Address: addr, Username: "md5_user", PasswordEnv: md5Env, TLS: "prefer"},
		{Name: "md5-require", Address: addr, Username: "md5_user", PasswordEnv: md5Env, TLS: "require"},
		{Name: "badca", Address: addr, Username: "scram_user", PasswordFile: scramFile, TLS: "verify-full", CAFile: pg.OtherCAFile},
		{Name: "wrongpw", Address: addr, Username: "scram_user", PasswordFile: wrongFile, TLS: "verify-full", CAFile: pg.CAFile},
	})

	// What the target's server says it did for a login, when it logs it (PostgreSQL 14+).
	checkServerAuth := func(t *testing.T, role, method string) {
		t.Helper()
		log := pg.serverLog()
		if !strings.Contains(log, "connection authenticated:") {
			t.Logf("server log has no 'connection authenticated' lines (PostgreSQL < 14?): not checking the method")
			return
		}
		want := fmt.Sprintf(`connection authenticated: identity="%s" method=%s `, role, method)
		if !strings.Contains(log, want) {
			t.Errorf("server log has no %q", want)
		}
	}

	t.Run("scram verify-full", func(t *testing.T) {
		app := uniq("up_scram")
		c := g.connect(t, "alice", alicePassword, "scram", app, "sslmode=require")
		checkUpstreamSession(t, c, "scram_user", true)
		c.Close(context.Background())
		_, ev := g.waitSession(t, app)
		checkStartEvent(t, ev, "scram", true)
		checkServerAuth(t, "scram_user", "scram-sha-256")
	})

	t.Run("md5", func(t *testing.T) {
		app := uniq("up_md5")
		c := g.connect(t, "alice", alicePassword, "md5", app, "sslmode=require")
		checkUpstreamSession(t, c, "md5_user", false)
		c.Close(context.Background())
		_, ev := g.waitSession(t, app)
		checkStartEvent(t, ev, "md5", false)
		checkServerAuth(t, "md5_user", "md5")
	})

	// prefer (the default) is plain to a loopback address (target.UpstreamTLS); require is not.
	for _, tc := range []struct {
		target string
		tls    bool
	}{{"md5-prefer", false}, {"md5-require", true}} {
		t.Run("tls "+strings.TrimPrefix(tc.target, "md5-")+" on loopback", func(t *testing.T) {
			app := uniq("up_mode")
			c := g.connect(t, "alice", alicePassword, tc.target, app, "sslmode=require")
			checkUpstreamSession(t, c, "md5_user", tc.tls)
			c.Close(context.Background())
			_, ev := g.waitSession(t, app)
			checkStartEvent(t, ev, tc.target, tc.tls)
		})
	}

	t.Run("psql scram verify-full", func(t *testing.T) {
		psql := requireTool(t, "psql")
		app := uniq("up_psql")
		env := append(cleanEnv(), "PGPASSWORD="+alicePassword, "PGAPPNAME="+app, "PGCONNECT_TIMEOUT=10")
		conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=alice dbname=scram sslmode=require", g.PGPort)
		r := run(time.Minute, env, nil, psql, conninfo, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
			"-c", "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()")
		if r.Code != 0 {
			t.Fatalf("psql %q: %s", conninfo, r)
		}
		if got := strings.TrimSpace(r.Stdout); got != "scram_user|t" {
			t.Errorf("psql printed %q, want scram_user|t (the target's login, over TLS)", got)
		}
		_, ev := g.waitSession(t, app)
		checkStartEvent(t, ev, "scram", true)
	})

	t.Run("verify-full with the wrong CA", func(t *testing.T) {
		pe := connectFails(t, g, "badca")
		if pe.Code != "08001" {
			t.Errorf("SQLSTATE %s (%s), want 08001", pe.Code, pe.Message)
		}
		re := regexp.MustCompile(`(?i)(failed to verify certificate|certificate verify failed|certificate signed by unknown authority|unknown certificate authority)`)
		if !re.MatchString(pe.Message) {
			t.Errorf("message %q does not say the target's certificate could not be verified", pe.Message)
		}
		if !strings.Contains(pe.Message, "badca") {
			t.Errorf("message %q does not name the target", pe.Message)
		}
		if !strings.Contains(pe.Hint, "ca_file") {
			t.Errorf("hint %q does not point at the target's ca_file", pe.Hint)
		}
		// The same cluster, the same login, the right CA: the failure was the CA alone.
		c := g.connect(t, "alice", alicePassword, "scram", uniq("up_scram_again"), "sslmode=require")
		checkUpstreamSession(t, c, "scram_user", true)
	})

	t.Run("wrong target password", func(t *testing.T) {
		pe := connectFails(t, g, "wrongpw")
		if pe.Severity != "FATAL" || pe.Code != "28P01" {
			t.Errorf("got %s %s (%s), want FATAL 28P01 passed through from the target", pe.Severity, pe.Code, pe.Message)
		}
		if !strings.Contains(pe.Message, "wrongpw") {
			t.Errorf("message %q does not name the target", pe.Message)
		}
		if !strings.Contains(pe.Hint, "gateway's own credential") {
			t.Errorf("hint %q does not say the gateway's credential (not the user's) was refused", pe.Hint)
		}
		if !strings.Contains(pe.Message, "scram_user") {
			t.Errorf("message %q is not the target's (it names the target's login)", pe.Message)
		}
		if !strings.Contains(pg.serverLog(), `password authentication failed for user "scram_user"`) {
			t.Errorf("the target's log does not show the failed login: the error did not come from it")
		}
	})

	t.Run("target password never stored or shown", func(t *testing.T) {
		needles := []string{scramPw, md5Pw, wrongPw}
		if hits := filesContaining(t, g.DataDir, needles...); len(hits) > 0 {
			t.Errorf("a target password appears in %v", hits)
		}
		if hits := filesContaining(t, filepath.Dir(g.logPath), needles...); len(hits) > 0 {
			t.Errorf("a target password appears in the gateway's own files (config, log): %v", hits)
		}
		tok := g.adminToken(t)
		code, body := g.api(t, tok, "GET", "/api/v1/sessions", nil)
		if code != 200 {
			t.Fatalf("GET /api/v1/sessions: HTTP %d: %s", code, clip(string(body), 2000))
		}
		checkNoSecret(t, "GET /api/v1/sessions", body, needles)
		ss := g.sessions(t, tok, sessionFilter{})
		targets := map[string]int{}
		for _, s := range ss {
			targets[s.Target]++
			path := "/api/v1/sessions/" + url.PathEscape(s.ID) + "/events"
			code, body := g.api(t, tok, "GET", path, nil)
			if code != 200 {
				t.Fatalf("GET %s: HTTP %d: %s", path, code, clip(string(body), 2000))
			}
			checkNoSecret(t, "GET "+path, body, needles)
		}
		if targets["scram"] < 3 || targets["md5"] < 1 {
			t.Errorf("sessions by target %v: want >= 3 on scram and >= 1 on md5 (the subtests above)", targets)
		}
		code, body = g.api(t, tok, "GET", "/api/v1/targets", nil)
		if code != 200 {
			t.Fatalf("GET /api/v1/targets: HTTP %d: %s", code, clip(string(body), 2000))
		}
		checkNoSecret(t, "GET /api/v1/targets", body, needles)
	})
}

// createTargetRoles creates the gateway's two logins on the cluster: scram_user with a SCRAM
// verifier and md5_user with an MD5 hash (so that the md5 pg_hba line really means MD5: with a
// SCRAM verifier the server would upgrade it to SCRAM).
func createTargetRoles(t *testing.T, pg *pgCluster, scramPw, md5Pw string) {
	t.Helper()
	su := pg.superConn(t, "postgres")
	ctx := context.Background()
	for _, q := range []string{
		"set password_encryption = 'scram-sha-256'",
		fmt.Sprintf("create role scram_user login password '%s'", scramPw),
		"set password_encryption = 'md5'",
		fmt.Sprintf("create role md5_user login password '%s'", md5Pw),
		"reset password_encryption",
	} {
		if _, err := su.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", strings.Split(q, " password ")[0], err)
		}
	}
	for role, prefix := range map[string]string{"scram_user": "SCRAM-SHA-256$", "md5_user": "md5"} {
		var stored string
		if err := su.QueryRow(ctx, "select rolpassword from pg_authid where rolname = $1", role).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, prefix) {
			t.Fatalf("%s's stored password starts %.16q, want %q", role, stored, prefix)
		}
	}
}

type upstreamTarget struct {
	Name, Address, Username, PasswordFile, PasswordEnv, TLS, CAFile string
}

// startUpstreamGateway starts a gateway with the default users and the given targets (which the
// harness's gwConfig cannot express: it always logs in as postgres with no password).
func startUpstreamGateway(t *testing.T, targets []upstreamTarget) *gateway {
	t.Helper()
	g := newGateway(t, t.TempDir(), gwConfig{})
	base, _, ok := strings.Cut(gwConfig{Targets: []targetCfg{}}.yaml(g.DataDir, g.APIPort, g.PGPort, nil), "\ntargets:\n")
	if !ok {
		t.Fatal("harness config has no targets section")
	}
	var b strings.Builder
	b.WriteString(base + "\ntargets:\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "  - name: %s\n    type: postgres\n    address: %s\n    database: postgres\n    username: %s\n    tls: %s\n",
			yq(tg.Name), yq(tg.Address), yq(tg.Username), tg.TLS)
		if tg.PasswordFile != "" {
			fmt.Fprintf(&b, "    password_file: %s\n", yq(tg.PasswordFile))
		}
		if tg.PasswordEnv != "" {
			fmt.Fprintf(&b, "    password_env: %s\n", yq(tg.PasswordEnv))
		}
		if tg.CAFile != "" {
			fmt.Fprintf(&b, "    ca_file: %s\n", yq(tg.CAFile))
		}
	}
	if err := os.WriteFile(g.cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			g.dumpLog(t, 0)
		}
	})
	g.start(t)
	return g
}

// checkUpstreamSession checks, on the target itself, who the client is and whether the
// gateway's connection to the target is TLS, and that a query runs.
func checkUpstreamSession(t *testing.T, c *pgx.Conn, role string, wantSSL bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var user, version string
	var ssl bool
	var n int
	err := c.QueryRow(ctx, "select current_user, ssl, coalesce(version, ''), (select count(*) from generate_series(1, 42))::int from pg_stat_ssl where pid = pg_backend_pid()").
		Scan(&user, &ssl, &version, &n)
	if err != nil {
		t.Fatalf("query through the gateway: %v", err)
	}
	if user != role || ssl != wantSSL || n != 42 {
		t.Errorf("target sees current_user=%q ssl=%v (%s) count=%d, want %q ssl=%v count=42", user, ssl, version, n, role, wantSSL)
	}
	t.Logf("on the target: current_user=%s ssl=%v %s", user, ssl, version)
}

// checkStartEvent checks the recorded session.start of a session to target.
func checkStartEvent(t *testing.T, ev []Event, target string, upstreamTLS bool) {
	t.Helper()
	st := ev[0]
	if st.Type != "session.start" {
		t.Fatalf("first event %q", st.Type)
	}
	if st.str("target") != target || st.str("user") != "alice" {
		t.Errorf("session.start target=%q user=%q, want %q alice", st.str("target"), st.str("user"), target)
	}
	if got, ok := st.Data["upstream_tls"].(bool); !ok || got != upstreamTLS {
		t.Errorf("session.start upstream_tls = %v (%T), want %v; data %v", st.Data["upstream_tls"], st.Data["upstream_tls"], upstreamTLS, st.Data)
	}
	if got, _ := st.Data["tls"].(bool); !got {
		t.Errorf("session.start tls = %v, want true (the client used sslmode=require)", st.Data["tls"])
	}
}

// connectFails connects through the gateway to target, expects an ErrorResponse and returns it.
func connectFails(t *testing.T, g *gateway, target string) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.dsn("alice", alicePassword, target, uniq("up_fail"), "sslmode=require"))
	if err == nil {
		c.Close(ctx)
		t.Fatalf("connect to %s succeeded, want an error", target)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("connect to %s: %v, want an ErrorResponse from the gateway", target, err)
	}
	t.Logf("%s: %s %s: %s (hint: %s)", target, pe.Severity, pe.Code, pe.Message, pe.Hint)
	return pe
}

func checkNoSecret(t *testing.T, what string, body []byte, needles []string) {
	t.Helper()
	for _, n := range needles {
		if bytes.Contains(body, []byte(n)) {
			t.Errorf("%s shows a target password", what)
		}
	}
}
