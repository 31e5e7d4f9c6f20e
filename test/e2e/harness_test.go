// Package e2e drives real clients (psql, pgx, pgbench, pg_dump, the airlock CLI) through a real
// gateway binary to the real PostgreSQL on 127.0.0.1:5432, and checks both what the client saw
// and what the gateway recorded, through the REST API.
//
// TestMain builds ./cmd/airlock once. Each test either uses the shared gateway (sharedGateway) or
// starts its own with startGateway when it needs a config of its own or must kill/measure it.
//
// Outside CI a missing tool or server skips the tests that need it; with CI set they fail.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	pgAddr        = "127.0.0.1:5432"
	adminPassword = "e2e-admin-Pw-9c41"
	alicePassword = "e2e-alice-Pw-5d2e"
	bobPassword   = "e2e-bob-Pw-77aa"
	audPassword   = "e2e-auditor-Pw-31f0"
)

var (
	airlockBin string // built by TestMain
	buildErr   error
	repoRoot   string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "airlock-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	airlockBin = filepath.Join(dir, "airlock")
	cmd := exec.Command("go", "build", "-o", airlockBin, "./cmd/airlock")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		// Reported by every test that needs the binary rather than aborting here, so that the
		// failure reads as a test failure with the compiler's output.
		buildErr = fmt.Errorf("go build ./cmd/airlock: %v\n%s", err, out)
	}
	code := m.Run()
	if shared.g != nil {
		shared.g.stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: shared gateway log kept at %s\n", shared.g.logPath)
		} else {
			os.RemoveAll(shared.dir)
		}
	}
	return code
}

// inCI reports whether a missing prerequisite must fail rather than skip.
func inCI() bool { return os.Getenv("CI") != "" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI is set: prerequisites must be present; run scripts/ensure-services.sh)", msg)
	}
	t.Skipf("%s; skipping outside CI (scripts/ensure-services.sh installs/starts it)", msg)
}

// requireTool skips (or fails in CI) when a client program is not on PATH.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found on PATH", name)
	}
	return p
}

// requirePostgres skips (or fails in CI) when the PostgreSQL server is not reachable.
func requirePostgres(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, directDSN("test"))
	if err != nil {
		missing(t, "PostgreSQL at %s not reachable: %v", pgAddr, err)
		return
	}
	c.Close(ctx)
}

func requireBinary(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func directDSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=5432 user=postgres dbname=%s sslmode=disable", db)
}

func directConn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, directDSN(db))
	if err != nil {
		t.Fatalf("direct connect to %s: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// ensureDatabase creates a database on the direct server if it does not exist.
func ensureDatabase(t testing.TB, name string) {
	t.Helper()
	c := directConn(t, "postgres")
	ctx := context.Background()
	var exists bool
	if err := c.QueryRow(ctx, "select exists(select 1 from pg_database where datname=$1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		if _, err := c.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42P04" { // created concurrently
				t.Fatal(err)
			}
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- configuration ----

type userCfg struct {
	Name, Password, Role string
	Groups               []string
	SSHKeys              []string // public keys in authorized_keys form (ssh_keys)
}

type targetCfg struct {
	Name, Address, Database, TLS string
	// Type is the target's type, default postgres. A postgres target gets username postgres
	// and an empty password; other types get only name, type and address, plus Raw.
	Type string
	// Raw is more YAML for this target's mapping, each line indented by four spaces
	// ("    username: root\n").
	Raw string
	// Agent, when set, makes it an agent-served target: name, type and agent only.
	Agent string
}

type policyCfg struct {
	Name     string
	Subjects []string
	Targets  []string
	Access   string
}

type gwConfig struct {
	Users          []userCfg
	Targets        []targetCfg
	Policies       []policyCfg
	ShutdownGrace  string // default 2s
	AllowPlaintext bool
	// Listeners are the protocol listeners besides api and postgres ("mysql", "ssh") that get
	// a free loopback port each; gateway.Port(name) tells which.
	Listeners []string
	// AgentListen is listen.agents (host:port), when set.
	AgentListen string
	Extra       string // raw YAML appended
}

func defaultUsers() []userCfg {
	return []userCfg{
		{Name: "alice", Password: alicePassword, Role: "user", Groups: []string{"dba"}},
		{Name: "bob", Password: bobPassword, Role: "user"},
		{Name: "audrey", Password: audPassword, Role: "auditor"},
	}
}

func defaultTargets() []targetCfg {
	return []targetCfg{{Name: "pg", Address: pgAddr, Database: "test", TLS: "disable"}}
}

func yq(s string) string { b, _ := json.Marshal(s); return string(b) } // JSON strings are YAML

func (c gwConfig) yaml(dataDir string, apiPort, pgPort int, ports map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\n", yq(dataDir))
	fmt.Fprintf(&b, "listen:\n  api: 127.0.0.1:%d\n  postgres: 127.0.0.1:%d\n", apiPort, pgPort)
	for _, name := range c.Listeners {
		fmt.Fprintf(&b, "  %s: 127.0.0.1:%d\n", name, ports[name])
	}
	if c.AgentListen != "" {
		fmt.Fprintf(&b, "  agents: %s\n", yq(c.AgentListen))
	}
	if !slices.Contains(c.Listeners, "mysql") {
		b.WriteString("  mysql: \"off\"\n") // on by default on 13306, which parallel gateways would share
	}
	if !slices.Contains(c.Listeners, "ssh") {
		b.WriteString("  ssh: \"off\"\n") // on by default on 12222, likewise
	}
	b.WriteString("log:\n  level: debug\n  format: json\n")
	fmt.Fprintf(&b, "postgres:\n  allow_plaintext_loopback: %v\n", c.AllowPlaintext)
	grace := c.ShutdownGrace
	if grace == "" {
		grace = "2s"
	}
	fmt.Fprintf(&b, "shutdown_grace: %s\n", grace)
	users := c.Users
	if users == nil {
		users = defaultUsers()
	}
	b.WriteString("users:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - name: %s\n    password: %s\n    role: %s\n", yq(u.Name), yq(u.Password), u.Role)
		if len(u.Groups) > 0 {
			g, _ := json.Marshal(u.Groups)
			fmt.Fprintf(&b, "    groups: %s\n", g)
		}
		if len(u.SSHKeys) > 0 {
			k, _ := json.Marshal(u.SSHKeys)
			fmt.Fprintf(&b, "    ssh_keys: %s\n", k)
		}
	}
	targets := c.Targets
	if targets == nil {
		targets = defaultTargets()
	}
	b.WriteString("targets:\n")
	for _, tg := range targets {
		if tg.Agent != "" {
			typ := tg.Type
			if typ == "" {
				typ = "postgres"
			}
			fmt.Fprintf(&b, "  - name: %s\n    type: %s\n    agent: %s\n", yq(tg.Name), yq(typ), yq(tg.Agent))
			b.WriteString(tg.Raw)
			continue
		}
		if tg.Type != "" && tg.Type != "postgres" {
			fmt.Fprintf(&b, "  - name: %s\n    type: %s\n    address: %s\n", yq(tg.Name), yq(tg.Type), yq(tg.Address))
			b.WriteString(tg.Raw)
			continue
		}
		tls := tg.TLS
		if tls == "" {
			tls = "disable"
		}
		fmt.Fprintf(&b, "  - name: %s\n    type: postgres\n    address: %s\n    database: %s\n    username: postgres\n    password: \"\"\n    tls: %s\n",
			yq(tg.Name), yq(tg.Address), yq(tg.Database), tls)
		b.WriteString(tg.Raw)
	}
	if len(c.Policies) > 0 {
		b.WriteString("policies:\n")
		for _, p := range c.Policies {
			s, _ := json.Marshal(p.Subjects)
			tg, _ := json.Marshal(p.Targets)
			fmt.Fprintf(&b, "  - name: %s\n    subjects: %s\n    targets: %s\n    access: %s\n", yq(p.Name), s, tg, p.Access)
		}
	}
	b.WriteString(c.Extra)
	return b.String()
}

// ---- the gateway process ----

type gateway struct {
	t       testing.TB // the test that started it (for the shared one: the first user)
	dir     string     // holds config.yaml, gateway.log, data/
	DataDir string
	APIPort int
	PGPort  int
	ports   map[string]int // other protocol listeners (gwConfig.Listeners)
	cfgPath string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait

	mu      sync.Mutex
	tokens  map[string]string // user -> API token
	appName map[string]string // session id -> application_name (cache)
}

// startGateway starts a gateway with cfg in a fresh temp dir, waits for /healthz and registers
// cleanup that stops it and prints its log when the test failed.
func startGateway(t testing.TB, cfg gwConfig) *gateway {
	t.Helper()
	requireBinary(t)
	requirePostgres(t)
	dir := t.TempDir()
	g := newGateway(t, dir, cfg)
	g.stopAtCleanup(t)
	g.start(t)
	return g
}

func newGateway(t testing.TB, dir string, cfg gwConfig) *gateway {
	g := &gateway{
		t: t, dir: dir,
		DataDir: filepath.Join(dir, "data"),
		APIPort: freePort(t), PGPort: freePort(t),
		cfgPath: filepath.Join(dir, "config.yaml"),
		logPath: filepath.Join(dir, "gateway.log"),
		tokens:  map[string]string{}, appName: map[string]string{},
		ports: map[string]int{},
	}
	for _, name := range cfg.Listeners {
		g.ports[name] = freePort(t)
	}
	if err := os.WriteFile(g.cfgPath, []byte(cfg.yaml(g.DataDir, g.APIPort, g.PGPort, g.ports)), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// start (re)starts the process on the same config and data dir.
func (g *gateway) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== e2e: starting gateway at %s ====\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(airlockBin, "gateway", "--config", g.cfgPath)
	cmd.Dir = g.dir
	cmd.Env = append(cleanEnv(), "AIRLOCK_ADMIN_PASSWORD="+adminPassword, "HOME="+g.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	g.cmd, g.done, g.err = cmd, make(chan struct{}), nil
	g.tokens = map[string]string{}
	go func() { g.err = cmd.Wait(); logf.Close(); close(g.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			g.dumpLog(t, 0)
			t.Fatalf("gateway exited before becoming healthy: %v", g.err)
		default:
		}
		resp, err := http.Get(g.apiURL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			g.dumpLog(t, 0)
			t.Fatalf("gateway not healthy on %s/healthz after 60s (last error %v)", g.apiURL(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The protocol listeners may open just after the API; wait for them too.
	ports := map[string]int{"postgres": g.PGPort}
	for name, p := range g.ports {
		ports[name] = p
	}
	for name, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				g.dumpLog(t, 0)
				t.Fatalf("gateway %s listener 127.0.0.1:%d not accepting", name, port)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Port is the loopback port of a protocol listener named in gwConfig.Listeners.
func (g *gateway) Port(name string) int {
	p, ok := g.ports[name]
	if !ok {
		g.t.Fatalf("no %s listener: add it to gwConfig.Listeners", name)
	}
	return p
}

// cleanEnv is the test's environment without variables that would change the gateway or a
// client under test (saved logins, libpq defaults).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AIRLOCK_") || strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }

// signal sends sig and waits up to wait for the process to exit. It returns the exit error
// (nil for status 0) and whether it exited.
func (g *gateway) signal(sig syscall.Signal, wait time.Duration) (error, bool) {
	if g.cmd == nil {
		return nil, true
	}
	select {
	case <-g.done:
		return g.err, true
	default:
	}
	_ = g.cmd.Process.Signal(sig)
	select {
	case <-g.done:
		return g.err, true
	case <-time.After(wait):
		return nil, false
	}
}

// stop ends the gateway: SIGTERM, then SIGKILL after 15s.
// stopAtCleanup stops the gateway when the test ends, and prints its log if the test failed.
func (g *gateway) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			g.dumpLog(t, 0)
		}
	})
}

func (g *gateway) stop() {
	if g == nil || g.cmd == nil {
		return
	}
	if _, ok := g.signal(syscall.SIGTERM, 15*time.Second); !ok {
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

func (g *gateway) logSize() int64 {
	st, err := os.Stat(g.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// dumpLog prints the gateway's log from byte offset from (the last 200 lines at most).
func (g *gateway) dumpLog(t testing.TB, from int64) {
	t.Helper()
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		t.Logf("gateway log: %v", err)
		return
	}
	if from > 0 && from <= int64(len(b)) {
		b = b[from:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 200 {
		// The warnings and errors before the last 200 lines are what explains a failure most
		// often: keep them.
		var early []string
		for _, l := range lines[:len(lines)-200] {
			if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
				early = append(early, l)
			}
		}
		t.Logf("gateway log (%s): %d warnings and errors before the last 200 lines:\n%s", g.logPath, len(early), strings.Join(early, "\n"))
		lines = lines[len(lines)-200:]
	}
	t.Logf("gateway log (%s, last %d lines):\n%s", g.logPath, len(lines), strings.Join(lines, "\n"))
}

// ---- the shared gateway ----

var shared struct {
	once sync.Once
	g    *gateway
	err  string
	dir  string
}

// sharedGateway returns the gateway used by tests that need only the default config. On a
// test's failure, the log lines written during that test are printed.
func sharedGateway(t *testing.T) *gateway {
	t.Helper()
	requireBinary(t)
	requirePostgres(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-e2e-shared-")
		if err != nil {
			shared.err = err.Error()
			return
		}
		shared.dir = dir
		ft := &fatalRecorder{T: t}
		func() {
			defer func() {
				if r := recover(); r != nil && r != errFatal {
					panic(r)
				}
			}()
			g := newGateway(ft, dir, gwConfig{})
			g.start(ft)
			shared.g = g
		}()
		if shared.g == nil {
			shared.err = "shared gateway failed to start: " + ft.msg
		}
	})
	if shared.g == nil {
		t.Fatal(shared.err)
	}
	g := shared.g
	from := g.logSize()
	t.Cleanup(func() {
		if t.Failed() {
			g.dumpLog(t, from)
		}
	})
	return g
}

var errFatal = errors.New("fatal")

// fatalRecorder turns Fatal into a recoverable panic so that a failure to start the shared
// gateway is reported to every test that needs it, not only the first.
type fatalRecorder struct {
	*testing.T
	msg string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	f.T.Log(f.msg)
	panic(errFatal)
}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	f.T.Log(f.msg)
	panic(errFatal)
}

// ---- PostgreSQL clients through the gateway ----

// dsn is a libpq/pgx keyword DSN to the gateway for user/password and dbname, with the
// client's default sslmode (prefer) unless extra sets one.
func (g *gateway) dsn(user, password, dbname, app string, extra ...string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s application_name=%s connect_timeout=10",
		g.PGPort, user, password, quoteDSN(dbname), app)
	for _, e := range extra {
		s += " " + e
	}
	return s
}

func quoteDSN(v string) string {
	if v == "" || strings.ContainsAny(v, " '\\") {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return v
}

func (g *gateway) connect(t testing.TB, user, password, dbname, app string, extra ...string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, g.dsn(user, password, dbname, app, extra...))
	if err != nil {
		t.Fatalf("connect through gateway as %s to %s: %v", user, dbname, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// psqlEnv is the environment for libpq tools connecting to the gateway.
func (g *gateway) psqlEnv(user, password, dbname, app string) []string {
	return append(cleanEnv(),
		"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", g.PGPort), "PGUSER="+user,
		"PGPASSWORD="+password, "PGDATABASE="+dbname, "PGAPPNAME="+app, "PGCONNECT_TIMEOUT=10")
}

type cmdResult struct {
	Stdout, Stderr string
	Code           int
	Err            error
}

// run runs a command with a timeout and returns its output; it never fails the test itself.
func run(timeout time.Duration, env []string, stdin io.Reader, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		r.Code = -1
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
		r.Code = -1
	}
	return r
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.Code, r.Err, clip(r.Stdout, 4000), clip(r.Stderr, 4000))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n/2] + "\n...[clipped]...\n" + s[len(s)-n/2:]
}

// ---- the REST API ----

type Session struct {
	ID        string          `json:"id"`
	User      string          `json:"user"`
	Target    string          `json:"target"`
	Type      string          `json:"type"`
	StartedAt time.Time       `json:"started_at"`
	EndedAt   *time.Time      `json:"ended_at"`
	EndReason string          `json:"end_reason"`
	Events    json.RawMessage `json:"events"`
}

func (s Session) ended() bool { return s.EndedAt != nil && !s.EndedAt.IsZero() }

type Event struct {
	Seq      uint64            `json:"seq"`
	Type     string            `json:"type"`
	OffsetNS int64             `json:"offset_ns"`
	Time     time.Time         `json:"time"`
	Data     map[string]any    `json:"data"`
	Hash     string            `json:"hash"`
	Prev     string            `json:"prev"`
	Rows     []json.RawMessage `json:"rows"`
	// Text or Base64 carries the bytes of copy and terminal events.
	Text   string `json:"text"`
	Base64 string `json:"base64"`
}

func (e Event) str(k string) string {
	v, _ := e.Data[k].(string)
	return v
}

func (e Event) num(k string) int64 {
	switch v := e.Data[k].(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return 0
}

var httpClient = &http.Client{Timeout: 120 * time.Second}

// token logs in as user (cached per gateway process).
func (g *gateway) token(t testing.TB, user, password string) string {
	t.Helper()
	g.mu.Lock()
	tok := g.tokens[user]
	g.mu.Unlock()
	if tok != "" {
		return tok
	}
	code, body := g.api(t, "", "POST", "/api/v1/auth/login", map[string]string{"username": user, "password": password})
	if code != 200 {
		t.Fatalf("login as %s: HTTP %d: %s", user, code, clip(string(body), 2000))
	}
	var r struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		t.Fatalf("login as %s: no token in %s (%v)", user, clip(string(body), 2000), err)
	}
	g.mu.Lock()
	g.tokens[user] = r.Token
	g.mu.Unlock()
	return r.Token
}

func (g *gateway) adminToken(t testing.TB) string { return g.token(t, "admin", adminPassword) }

func (g *gateway) apiURL() string { return fmt.Sprintf("http://127.0.0.1:%d", g.APIPort) }

func (g *gateway) api(t testing.TB, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.apiURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

type sessionFilter struct {
	From, To     time.Time
	User, Target string
}

func (f sessionFilter) query() string {
	q := url.Values{}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	if f.User != "" {
		q.Set("user", f.User)
	}
	if f.Target != "" {
		q.Set("target", f.Target)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func (g *gateway) sessions(t testing.TB, token string, f sessionFilter) []Session {
	t.Helper()
	code, body := g.api(t, token, "GET", "/api/v1/sessions"+f.query(), nil)
	if code != 200 {
		t.Fatalf("GET /api/v1/sessions%s: HTTP %d: %s", f.query(), code, clip(string(body), 2000))
	}
	var r struct {
		Sessions []Session `json:"sessions"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode sessions: %v: %s", err, clip(string(body), 2000))
	}
	return r.Sessions
}

func (g *gateway) events(t testing.TB, token, id string) []Event {
	t.Helper()
	code, body := g.api(t, token, "GET", "/api/v1/sessions/"+url.PathEscape(id)+"/events", nil)
	if code != 200 {
		t.Fatalf("GET /api/v1/sessions/%s/events: HTTP %d: %s", id, code, clip(string(body), 2000))
	}
	var r struct {
		Events []Event `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode events of %s: %v: %s", id, err, clip(string(body), 2000))
	}
	return r.Events
}

// sessionsByApp returns the sessions (seen by admin) whose session.start event names
// application_name app.
func (g *gateway) sessionsByApp(t testing.TB, app string) []Session {
	t.Helper()
	tok := g.adminToken(t)
	var out []Session
	for _, s := range g.sessions(t, tok, sessionFilter{}) {
		g.mu.Lock()
		name, ok := g.appName[s.ID]
		g.mu.Unlock()
		if !ok {
			ev := g.events(t, tok, s.ID)
			if len(ev) > 0 && ev[0].Type == "session.start" {
				name = ev[0].str("application_name")
				g.mu.Lock()
				g.appName[s.ID] = name
				g.mu.Unlock()
			}
		}
		if name == app {
			out = append(out, s)
		}
	}
	return out
}

// waitSessions waits until at least n sessions with application_name app exist and (when
// ended) all of them have ended; it returns them.
func (g *gateway) waitSessions(t testing.TB, app string, n int, ended bool) []Session {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss := g.sessionsByApp(t, app)
		ok := len(ss) >= n
		if ended {
			for _, s := range ss {
				ok = ok && s.ended()
			}
		}
		if ok {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: want >= %d sessions with application_name %q (ended=%v), have %d: %+v", n, app, ended, len(ss), ss)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSession waits for exactly one session of app to have ended and returns it with its
// events, whose chain it checks.
func (g *gateway) waitSession(t testing.TB, app string) (Session, []Event) {
	t.Helper()
	ss := g.waitSessions(t, app, 1, true)
	if len(ss) != 1 {
		t.Fatalf("want 1 session with application_name %q, have %d: %+v", app, len(ss), ss)
	}
	ev := g.events(t, g.adminToken(t), ss[0].ID)
	checkChain(t, ev)
	return ss[0], ev
}

// checkChain checks the invariants every recording must hold: seq 1..N gapless, offsets
// non-decreasing, each prev equal to the previous event's hash, session.start first and
// session.end last (followed only by its final signed checkpoint).
func checkChain(t testing.TB, ev []Event) {
	t.Helper()
	if len(ev) < 2 {
		t.Fatalf("recording has %d events, want at least session.start and session.end", len(ev))
	}
	if ev[0].Type != "session.start" {
		t.Errorf("first event is %q, want session.start", ev[0].Type)
	}
	if last := ev[len(ev)-1]; last.Type != "checkpoint" || last.Data["final"] != true {
		t.Errorf("last event is %q %v, want the final checkpoint", last.Type, last.Data)
	}
	if end := endEvent(ev); end == nil || end.Seq != uint64(len(ev)-1) {
		t.Errorf("the event before the final checkpoint is not session.end")
	}
	if p := ev[0].Prev; p != "" && strings.Trim(p, "0") != "" {
		t.Errorf("first event's prev = %q, want empty or zero", p)
	}
	for i, e := range ev {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d, want %d (gapless from 1)", i, e.Seq, i+1)
		}
		if len(e.Hash) < 32 {
			t.Errorf("event seq %d has hash %q", e.Seq, e.Hash)
		}
		if e.Time.IsZero() {
			t.Errorf("event seq %d has no time", e.Seq)
		}
		if i > 0 {
			if e.OffsetNS < ev[i-1].OffsetNS {
				t.Errorf("event seq %d offset %d < previous %d", e.Seq, e.OffsetNS, ev[i-1].OffsetNS)
			}
			if e.Prev != ev[i-1].Hash {
				t.Errorf("event seq %d prev %q != previous hash %q", e.Seq, e.Prev, ev[i-1].Hash)
			}
		}
		if t.Failed() && i > 5 {
			return // one broken chain is enough to read
		}
	}
}

func ofType(ev []Event, typ string) []Event {
	var out []Event
	for _, e := range ev {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func sumNum(ev []Event, typ, key string) int64 {
	var n int64
	for _, e := range ofType(ev, typ) {
		n += e.num(key)
	}
	return n
}

// findQuery returns the first query event whose text contains substr.
func findQuery(ev []Event, substr string) (Event, bool) {
	for _, e := range ofType(ev, "query") {
		if strings.Contains(e.str("text"), substr) {
			return e, true
		}
	}
	return Event{}, false
}

func mustQuery(t testing.TB, ev []Event, substr string) Event {
	t.Helper()
	e, ok := findQuery(ev, substr)
	if !ok {
		t.Fatalf("no query event containing %q; queries: %v", substr, queryTexts(ev))
	}
	return e
}

func queryTexts(ev []Event) []string {
	var s []string
	for _, e := range ofType(ev, "query") {
		s = append(s, clip(e.str("text"), 200))
	}
	return s
}

// endEvent returns a recording's session.end: its last event, or the one before the final
// checkpoint that follows it; nil when the recording has no end.
func endEvent(ev []Event) *Event {
	for i := len(ev) - 1; i >= 0 && i >= len(ev)-2; i-- {
		if ev[i].Type == "session.end" {
			return &ev[i]
		}
	}
	return nil
}

func endReason(ev []Event) string {
	if e := endEvent(ev); e != nil {
		return e.str("reason")
	}
	return ""
}

// uniq returns an application_name unique to this test run.
func uniq(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e12)
}

// filesContaining lists the files under dir whose bytes contain any of needles.
func filesContaining(t testing.TB, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if containsAny(f, needles) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// containsAny scans r in chunks with an overlap so that a needle spanning two reads is found.
func containsAny(r io.Reader, needles []string) bool {
	maxLen := 0
	for _, n := range needles {
		maxLen = max(maxLen, len(n))
	}
	br := bufio.NewReaderSize(r, 1<<20)
	buf := make([]byte, 0, 1<<20+maxLen)
	chunk := make([]byte, 1<<20)
	for {
		n, err := br.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for _, nd := range needles {
			if bytes.Contains(buf, []byte(nd)) {
				return true
			}
		}
		if len(buf) > maxLen {
			buf = append(buf[:0], buf[len(buf)-maxLen:]...)
		}
		if err != nil {
			return false
		}
	}
}

// rssKB reads VmRSS of pid in kB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d kB", &kb)
			return kb, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func pgErrCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// lockedBuffer is a bytes.Buffer that a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// approvalRequest is a statement waiting for approval, as GET /api/v1/requests lists it.
type approvalRequest struct{ ID, User, Target, Rule, Statement string }

// waitApprovalRequest polls GET /api/v1/requests (as admin, a token) for up to a minute and
// returns the first request match accepts; the test fails, naming what, when none comes.
func (g *gateway) waitApprovalRequest(t testing.TB, admin, what string, match func(approvalRequest) bool) approvalRequest {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body := g.api(t, admin, "GET", "/api/v1/requests", nil)
		var res struct {
			Requests []approvalRequest
		}
		if code == 200 && json.Unmarshal(body, &res) == nil {
			for _, r := range res.Requests {
				if match(r) {
					return r
				}
			}
		}
	}
	t.Fatalf("no approval request for %s", what)
	return approvalRequest{}
}
