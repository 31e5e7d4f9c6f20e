package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCLILoginListReplay(t *testing.T) {
	psql := requireTool(t, "psql")
	g := sharedGateway(t)
	app := uniq("cli_replay")
	r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), nil, psql, "-X", "-c", "select md5('airlock-replay') as digest")
	if r.Code != 0 {
		t.Fatalf("psql: %s", r)
	}
	sum := md5.Sum([]byte("airlock-replay"))
	digest := hex.EncodeToString(sum[:])
	s, _ := g.waitSession(t, app)

	home := t.TempDir()
	env := append(cleanEnv(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config")
	// Password on stdin (not a terminal).
	lr := run(time.Minute, env, strings.NewReader(alicePassword+"\n"), airlockBin, "login", "--gateway", g.apiURL(), "--user", "alice")
	if lr.Code != 0 {
		t.Fatalf("airlock login: %s", lr)
	}
	if strings.Contains(lr.Stdout+lr.Stderr, alicePassword) {
		t.Errorf("airlock login echoed the password")
	}

	list := run(time.Minute, env, nil, airlockBin, "sessions", "list")
	if list.Code != 0 || !strings.Contains(list.Stdout, s.ID) {
		t.Errorf("airlock sessions list does not show %s: %s", s.ID, list)
	}
	jl := run(time.Minute, env, nil, airlockBin, "sessions", "list", "--json")
	if jl.Code != 0 {
		t.Fatalf("airlock sessions list --json: %s", jl)
	}
	if !jsonListHas(jl.Stdout, s.ID) {
		t.Errorf("sessions list --json lacks %s: %s", s.ID, clip(jl.Stdout, 2000))
	}
	show := run(time.Minute, env, nil, airlockBin, "sessions", "show", s.ID)
	if show.Code != 0 || !strings.Contains(show.Stdout, s.ID) || !strings.Contains(show.Stdout, "alice") {
		t.Errorf("airlock sessions show %s: %s", s.ID, show)
	}
	rp := run(time.Minute, env, nil, airlockBin, "replay", s.ID, "--speed", "0")
	if rp.Code != 0 {
		t.Fatalf("airlock replay: %s", rp)
	}
	if !strings.Contains(rp.Stdout, "select md5('airlock-replay') as digest") {
		t.Errorf("replay lacks the query text: %s", clip(rp.Stdout, 3000))
	}
	if !strings.Contains(rp.Stdout, digest) {
		t.Errorf("replay lacks the row value %s: %s", digest, clip(rp.Stdout, 3000))
	}

	// AIRLOCK_GATEWAY / AIRLOCK_TOKEN override the saved login: with bob's token alice's
	// session is not listed.
	bobEnv := append(cleanEnv(), "HOME="+t.TempDir(), "AIRLOCK_GATEWAY="+g.apiURL(), "AIRLOCK_TOKEN="+g.token(t, "bob", bobPassword))
	bl := run(time.Minute, bobEnv, nil, airlockBin, "sessions", "list", "--json")
	if bl.Code != 0 {
		t.Errorf("sessions list with AIRLOCK_TOKEN: %s", bl)
	} else if jsonListHas(bl.Stdout, s.ID) {
		t.Errorf("bob's token lists alice's session %s", s.ID)
	}
	// And a wrong password fails login with a non-zero exit.
	bad := run(time.Minute, append(cleanEnv(), "HOME="+t.TempDir()), strings.NewReader("wrong\n"), airlockBin, "login", "--gateway", g.apiURL(), "--user", "alice")
	if bad.Code == 0 {
		t.Errorf("airlock login with a wrong password exited 0: %s", bad)
	}
}

// jsonListHas reports whether the --json output (an array of sessions or {"sessions":[...]})
// lists id.
func jsonListHas(out, id string) bool {
	var arr []map[string]any
	if json.Unmarshal([]byte(out), &arr) != nil {
		var obj struct {
			Sessions []map[string]any `json:"sessions"`
		}
		if json.Unmarshal([]byte(out), &obj) != nil {
			return false
		}
		arr = obj.Sessions
	}
	for _, s := range arr {
		if s["id"] == id {
			return true
		}
	}
	return false
}

func TestGracefulShutdown(t *testing.T) {
	psql := requireTool(t, "psql")
	g := startGateway(t, gwConfig{ShutdownGrace: "1s"})
	appX, appP := uniq("shutdown_pgx"), uniq("shutdown_psql")
	c := g.connect(t, "alice", alicePassword, "pg", appX)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	// An interactive psql, idle at its prompt.
	pcmd := exec.Command(psql, "-X")
	pcmd.Env = g.psqlEnv("alice", alicePassword, "pg", appP)
	stdin, _ := pcmd.StdinPipe()
	var pout, perr strings.Builder
	pcmd.Stdout, pcmd.Stderr = &pout, &perr
	if err := pcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer pcmd.Process.Kill()
	stdin.Write([]byte("select 'psql-alive';\n"))
	g.waitSessions(t, appP, 1, false)
	g.waitSessions(t, appX, 1, false)

	start := time.Now()
	err, exited := g.signal(syscall.SIGTERM, 20*time.Second)
	took := time.Since(start)
	if !exited {
		t.Fatalf("gateway still running 20s after SIGTERM with shutdown_grace 1s")
	}
	if err != nil {
		t.Errorf("gateway exit after SIGTERM: %v, want status 0", err)
	}
	if took > 8*time.Second {
		t.Errorf("gateway took %v to stop with shutdown_grace 1s", took)
	}
	if took < 900*time.Millisecond {
		t.Errorf("gateway stopped after %v, before shutdown_grace 1s had passed", took)
	}

	// The idle pgx connection got FATAL 57P01 (admin_shutdown) or at least a closed connection.
	_, err = c.Exec(ctx, "select 1")
	if err == nil {
		t.Errorf("pgx connection still works after the gateway stopped")
	} else if code := pgErrCode(err); code != "" && !strings.HasPrefix(code, "57") {
		t.Errorf("pgx got SQLSTATE %s (%v), want class 57 (57P01)", code, err)
	} else {
		t.Logf("pgx got: %v", err)
	}
	stdin.Write([]byte("select 'after-shutdown';\n"))
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- pcmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Errorf("psql did not exit after the gateway stopped")
	}
	if !strings.Contains(perr.String(), "terminat") && !strings.Contains(perr.String(), "closed") && !strings.Contains(perr.String(), "shut") {
		t.Errorf("psql stderr %q does not say the connection was terminated", perr.String())
	}
	if !strings.Contains(pout.String(), "psql-alive") {
		t.Errorf("psql never ran its first query: %q", pout.String())
	}

	// Restart on the same data dir: both sessions are closed with gateway_shutdown.
	g.start(t)
	for _, app := range []string{appX, appP} {
		s, ev := g.waitSession(t, app)
		if r := endReason(ev); r != "gateway_shutdown" {
			t.Errorf("%s: end reason %q, want gateway_shutdown", app, r)
		}
		if s.EndReason != "" && s.EndReason != "gateway_shutdown" {
			t.Errorf("%s: listed end_reason %q", app, s.EndReason)
		}
	}
}
