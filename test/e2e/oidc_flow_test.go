package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The OpenID Provider of these tests is zitadel/oidc's example OP (certified implementation),
// built from test/oidcprovider, its own module (scripts/ensure-services.sh downloads it).
var op struct {
	once sync.Once
	bin  string
	err  error
}

func requireOIDCProvider(t testing.TB) string {
	t.Helper()
	requireBinary(t)
	op.once.Do(func() {
		op.bin = filepath.Join(filepath.Dir(airlockBin), "oidcprovider")
		cmd := exec.Command("go", "build", "-o", op.bin, ".")
		cmd.Dir = filepath.Join(repoRoot, "test", "oidcprovider")
		if out, err := cmd.CombinedOutput(); err != nil {
			op.err = fmt.Errorf("build test/oidcprovider: %v\n%s", err, out)
		}
	})
	if op.err != nil {
		missing(t, "the OpenID Provider cannot be built (%v)", op.err)
	}
	return op.bin
}

// idp is a running OpenID Provider.
type idp struct {
	Issuer string
	cmd    *exec.Cmd
}

const opSecret = "e2e-op-client-Secret-9c1f"

// startOP starts the provider with users given as NAME:PASSWORD:GROUP1,GROUP2.
func startOP(t testing.TB, users ...string) *idp {
	t.Helper()
	bin := requireOIDCProvider(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"-addr", addr, "-client-id", "airlock", "-client-secret", opSecret}
	for _, u := range users {
		args = append(args, "-user", u)
	}
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "op.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &idp{Issuer: "http://" + addr, cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("OpenID Provider log:\n%s", clip(string(b), 8000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.Issuer + "/.well-known/openid-configuration")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the OpenID Provider does not answer on %s: %v", p.Issuer, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// set changes a user at the provider, as its admin would.
func (p *idp) set(t testing.TB, user string, change map[string]any) {
	t.Helper()
	b, _ := json.Marshal(change)
	res, err := http.Post(p.Issuer+"/test/users/"+user, "application/json", bytes.NewReader(b))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("change %s at the provider: %v %v", user, res, err)
	}
	res.Body.Close()
}

func (p *idp) gatewayConfig(extra string) string {
	return fmt.Sprintf(`
oidc:
  - name: corp
    issuer: %s
    client_id: airlock
    client_secret: %s
    scopes: [openid, profile, email, offline_access]
    roles:
      ops-admins: admin
%s`, yq(p.Issuer), yq(opSecret), extra)
}

// browser is what a person does in a browser: follow redirects, keep cookies, post forms.
func browser(t testing.TB) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// startCLI runs airlock in the background and returns a reader of its stderr lines and a
// function that waits for it to exit.
func startCLI(t testing.TB, home string, args ...string) (*bufio.Scanner, func() cmdResult) {
	t.Helper()
	cmd := exec.Command(airlockBin, args...)
	cmd.Env = append(cleanEnv(), "HOME="+home)
	var out bytes.Buffer
	cmd.Stdout = &out
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	cmd.Stderr = io.MultiWriter(pw, &errb)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	wait := func() cmdResult {
		select {
		case err := <-done:
			r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
			if cmd.ProcessState != nil {
				r.Code = cmd.ProcessState.ExitCode()
			}
			return r
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			return cmdResult{Code: -1, Err: fmt.Errorf("airlock %v did not finish", args), Stdout: out.String(), Stderr: errb.String()}
		}
	}
	return bufio.NewScanner(pr), wait
}

// waitLine returns the first submatch of re in the CLI's stderr.
func waitLine(t testing.TB, sc *bufio.Scanner, re *regexp.Regexp) string {
	t.Helper()
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			// Keep reading, so that the CLI never blocks writing to stderr.
			go func() {
				for sc.Scan() {
				}
			}()
			return m[1]
		}
	}
	t.Fatalf("the CLI never printed a line matching %s", re)
	return ""
}

// browserLogin logs in at the provider's login form, starting from the authorization URL the
// CLI printed; the provider then redirects to the CLI's loopback listener.
func browserLogin(t testing.TB, authURL, user, password string) {
	t.Helper()
	b := browser(t)
	res, err := b.Get(authURL)
	if err != nil {
		t.Fatalf("open the authorization URL: %v", err)
	}
	res.Body.Close()
	// The provider redirected to its login form: /login/username?authRequestID=...
	id := res.Request.URL.Query().Get("authRequestID")
	if res.StatusCode != 200 || id == "" {
		t.Fatalf("no login form at %s (%d)", res.Request.URL, res.StatusCode)
	}
	form := url.Values{"id": {id}, "username": {user}, "password": {password}}
	res, err = b.PostForm(res.Request.URL.Scheme+"://"+res.Request.URL.Host+"/login/username", form)
	if err != nil {
		t.Fatalf("post the login form: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// The last hop is the CLI's loopback redirect, which answers with its own page.
	if res.StatusCode != 200 || !strings.Contains(string(body), "Airlock login complete") {
		t.Fatalf("after the login form: %d at %s: %s", res.StatusCode, res.Request.URL, clip(string(body), 2000))
	}
}

func savedCredentials(t testing.TB, home string) (token string, refreshable bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, ".config", "airlock", "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Token       string `json:"token"`
		Refreshable bool   `json:"refreshable"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Token, c.Refreshable
}

var urlLine = regexp.MustCompile(`^\s+(http://\S+/auth\?\S+)$`)

// TestOIDCAuthCodeFlow: airlock login --oidc against a real OpenID Provider (authorization
// code with PKCE, loopback redirect, the form posted as a person would), the token as the
// PostgreSQL password, then refresh: group changes take effect, the CLI refreshes a token about
// to expire by itself, and a disabled user is refused at the next refresh.
func TestOIDCAuthCodeFlow(t *testing.T) {
	p := startOP(t, "dora:dora-Pw-1:ops-admins,dba")
	// token_ttl 1m: the CLI refreshes a token that expires within the minute, so every command
	// after login refreshes.
	g := startGateway(t, gwConfig{Extra: p.gatewayConfig("    token_ttl: 1m\n")})
	home := t.TempDir()
	sc, wait := startCLI(t, home, "login", "--gateway", g.apiURL(), "--oidc", "--no-browser")
	authURL := waitLine(t, sc, urlLine)
	if !strings.Contains(authURL, "code_challenge_method=S256") || !strings.Contains(authURL, "redirect_uri=http%3A%2F%2F127.0.0.1%3A") {
		t.Fatalf("authorization URL without PKCE or loopback redirect: %s", authURL)
	}
	browserLogin(t, authURL, "dora", "dora-Pw-1")
	r := wait()
	if r.Code != 0 || !strings.Contains(r.Stdout, "as dora via corp (role admin, groups dba,ops-admins)") {
		t.Fatalf("login --oidc: %s", r)
	}
	tok, refreshable := savedCredentials(t, home)
	if !refreshable {
		t.Fatal("the OIDC login's token is not refreshable")
	}
	if code, err := g.pgLogin(t, "dora", tok, "pg"); code != "" || err != nil {
		t.Fatalf("the OIDC login's token as the PostgreSQL password: %q %v", code, err)
	}
	psql := requireTool(t, "psql")
	if out := run(time.Minute, g.psqlEnv("dora", tok, "pg", "oidc-psql"), nil, psql, "-XAtc", "select current_user is not null"); out.Code != 0 || strings.TrimSpace(out.Stdout) != "t" {
		t.Fatalf("psql with the token: %s", out)
	}
	g.requireAudit(t, "login", map[string]string{"actor": "dora", "outcome": "ok", "method": "oidc", "provider": "corp"})

	// The IdP's admin moves dora out of ops-admins: at the next refresh she is a user.
	p.set(t, "dora", map[string]any{"groups": []string{"dba"}})
	r = cli(t, home, "", "login", "--refresh")
	if r.Code != 0 || !strings.Contains(r.Stdout, "(role user, groups dba)") {
		t.Fatalf("refresh after a group change: %s", r)
	}
	tok2, _ := savedCredentials(t, home)
	if code, body := g.api(t, tok2, "GET", "/api/v1/service-accounts", nil); code != 403 {
		t.Fatalf("the refreshed token still has admin rights: %d %s", code, body)
	}
	g.requireAudit(t, "token.refresh", map[string]string{"actor": "dora", "outcome": "ok", "role": "user", "groups": "dba"})

	// Any command refreshes a token about to expire.
	if r := cli(t, home, "", "targets", "list"); r.Code != 0 {
		t.Fatalf("targets list: %s", r)
	}
	if tok3, _ := savedCredentials(t, home); tok3 == tok2 {
		t.Error("the CLI did not refresh a token about to expire")
	}

	// dora is disabled at the provider: the next refresh is refused.
	p.set(t, "dora", map[string]any{"disabled": true})
	r = cli(t, home, "", "login", "--refresh")
	if r.Code == 0 || !strings.Contains(r.Stderr, "401") {
		t.Fatalf("refresh of a disabled user: %s", r)
	}
	g.requireAudit(t, "token.refresh", map[string]string{"actor": "dora", "outcome": "denied", "reason": "idp_refused"})
}

var deviceLine = regexp.MustCompile(`enter the code (\S+)`)

// TestOIDCDeviceFlow: airlock login --device against the real provider, the user approving on
// "another device" (the provider's device pages, posted as a person would); then an admin
// revokes her tokens, and the refresh is refused too.
func TestOIDCDeviceFlow(t *testing.T) {
	p := startOP(t, "erin:erin-Pw-2:dba")
	g := startGateway(t, gwConfig{Extra: p.gatewayConfig("")})
	home := t.TempDir()
	sc, wait := startCLI(t, home, "login", "--gateway", g.apiURL(), "--device")
	code := waitLine(t, sc, deviceLine)
	b := browser(t)
	res, err := b.PostForm(p.Issuer+"/device/login", url.Values{"user_code": {code}, "username": {"erin"}, "password": {"erin-Pw-2"}})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("device login form: %v %v", res, err)
	}
	res.Body.Close()
	res, err = b.PostForm(p.Issuer+"/device/confirm", url.Values{"action": {"allowed"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "Device authorization allowed") {
		t.Fatalf("device confirm: %d %s", res.StatusCode, body)
	}
	r := wait()
	if r.Code != 0 || !strings.Contains(r.Stdout, "as erin via corp (role user, groups dba)") {
		t.Fatalf("login --device: %s", r)
	}
	tok, _ := savedCredentials(t, home)
	if code, err := g.pgLogin(t, "erin", tok, "pg"); code != "" || err != nil {
		t.Fatalf("the device login's token as the PostgreSQL password: %q %v", code, err)
	}
	g.requireAudit(t, "login", map[string]string{"actor": "erin", "outcome": "ok", "method": "oidc_device", "provider": "corp"})

	// An admin revokes erin's tokens: the token and its refresh are refused at once.
	if code, body := g.api(t, g.adminToken(t), "POST", "/api/v1/auth/revoke", map[string]string{"user": "erin"}); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := g.pgLogin(t, "erin", tok, "pg"); code != "28P01" {
		t.Fatalf("revoked device-login token: %q", code)
	}
	if r := cli(t, home, "", "login", "--refresh"); r.Code == 0 {
		t.Fatalf("refresh of a revoked token: %s", r)
	}
	g.requireAudit(t, "token.refresh", map[string]string{"actor": "erin", "outcome": "denied", "reason": "revoked"})
}
