package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/airlock-gw/airlock/internal/auth"
)

func init() {
	register("login", "log in to a gateway (password, OIDC browser or device flow, IdP token) and save a token", func(args []string) int {
		return runLogin(osEnv(), args)
	})
	register("logout", "revoke the saved token and forget it", func(args []string) int {
		return runLogout(osEnv(), args)
	})
	register("tokens", "revoke every token of a user at once (admin)", func(args []string) int {
		return runTokens(osEnv(), args)
	})
	register("hash-password", "hash a password for users[].password_hash (argon2id, or --bcrypt)", func(args []string) int {
		return runHashPassword(osEnv(), args)
	})
}

func runHashPassword(e *env, args []string) int {
	fs := e.newFlagSet("hash-password", "hash-password [--bcrypt]   (the password is read from the terminal or stdin)")
	useBcrypt := fs.Bool("bcrypt", false, "a bcrypt hash instead of argon2id")
	if _, err := parseArgs(fs, args); err != nil {
		return usageCode(err)
	}
	pw, err := e.readSecret("Password: ")
	if err != nil {
		return e.fail(err)
	}
	var h string
	if *useBcrypt {
		h, err = auth.HashPassword(pw)
	} else {
		h, err = auth.HashPasswordArgon2id(pw)
	}
	if err != nil {
		return e.fail(err)
	}
	fmt.Fprintln(e.stdout, h)
	return exitOK
}

const loginUsage = `login --gateway URL --user NAME [--print-token]          (local password, read from the terminal or stdin)
       airlock login --gateway URL --oidc [--provider NAME] [--no-browser]  (browser: authorization code + PKCE)
       airlock login --gateway URL --device [--provider NAME]               (headless: device flow)
       airlock login --gateway URL --token IDP_TOKEN|- [--provider NAME]    (exchange an IdP token)
       airlock login --refresh                                              (renew the saved OIDC login's token)

Each form also takes --ssh-key FILE.pub: an SSH certificate for that key from the gateway's user
CA, saved as FILE-cert.pub (see airlock ssh-cert).`

// loginAnswer is the API's answer to every login.
type loginAnswer struct {
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expires_at"`
	User        string    `json:"user"`
	Role        string    `json:"role"`
	Groups      []string  `json:"groups"`
	Provider    string    `json:"provider"`
	Refreshable bool      `json:"refreshable"`
}

func runLogin(e *env, args []string) int {
	fs := e.newFlagSet("login", loginUsage)
	gateway := fs.String("gateway", "", "gateway API URL, like http://127.0.0.1:8009 (default: $AIRLOCK_GATEWAY or the saved one)")
	user := fs.String("user", "", "local user name (default: the saved one)")
	printToken := fs.Bool("print-token", false, "print only the token (for PGPASSWORD=$(airlock login ... --print-token))")
	useOIDC := fs.Bool("oidc", false, "log in with an OIDC provider in a browser (authorization code with PKCE)")
	provider := fs.String("provider", "", "the OIDC provider's name (default: the only one configured); implies --oidc")
	device := fs.Bool("device", false, "log in with the OIDC device flow: enter a code on another device")
	idpToken := fs.String("token", "", "exchange this IdP token (an ID token or a JWT access token; - reads it from stdin)")
	noBrowser := fs.Bool("no-browser", false, "print the login URL instead of opening a browser")
	refresh := fs.Bool("refresh", false, "renew the saved token from its OIDC session")
	sshKey := fs.String("ssh-key", "", "also get an SSH certificate for this public key (FILE.pub), saved as FILE-cert.pub (airlock ssh-cert)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock login: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	saved, err := e.loadCredentials()
	if err != nil {
		return e.fail(err)
	}
	gw := *gateway
	if gw == "" {
		gw = e.getenv("AIRLOCK_GATEWAY")
	}
	if gw == "" {
		gw = saved.Gateway
	}
	gw = normalizeGateway(gw)
	if gw == "" {
		fmt.Fprintln(e.stderr, "airlock login: --gateway URL is required")
		return exitUsage
	}
	c := &client{e: e, gateway: gw}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	var ans loginAnswer
	switch {
	case *refresh:
		if saved.Token == "" || saved.Gateway != gw {
			return e.fail(fmt.Errorf("no saved login for %s to refresh: run airlock login", gw))
		}
		err = c.post(ctx, "/api/v1/auth/refresh", map[string]string{"token": saved.Token}, &ans)
	case *idpToken != "":
		tok := *idpToken
		if tok == "-" {
			if tok, err = e.readSecret("IdP token: "); err != nil {
				return e.fail(err)
			}
		}
		err = c.post(ctx, "/api/v1/auth/token", map[string]string{"provider": *provider, "token": strings.TrimSpace(tok)}, &ans)
	case *device:
		ans, err = e.deviceLogin(ctx, c, *provider)
	case *useOIDC || *provider != "":
		ans, err = e.browserLogin(ctx, c, *provider, *noBrowser)
	default:
		name := *user
		if name == "" && saved.Gateway == gw {
			name = saved.User
		}
		if name == "" {
			fmt.Fprintln(e.stderr, "airlock login: --user NAME is required (or --oidc, --device, --token)")
			return exitUsage
		}
		password, perr := e.readSecret(fmt.Sprintf("Password for %s at %s: ", name, gw))
		if perr != nil {
			return e.fail(perr)
		}
		err = c.post(ctx, "/api/v1/auth/login", map[string]string{"username": name, "password": password}, &ans)
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return e.fail(fmt.Errorf("login to %s as %s failed: %s", gw, name, ae.Message))
		}
	}
	if err != nil {
		return e.fail(err)
	}
	if ans.Token == "" {
		return e.fail(fmt.Errorf("login: unexpected answer from %s: no token", gw))
	}
	path, err := e.saveCredentials(credentials{Gateway: gw, User: ans.User, Token: ans.Token, ExpiresAt: ans.ExpiresAt,
		Provider: ans.Provider, Refreshable: ans.Refreshable})
	if err != nil {
		return e.fail(err)
	}
	var certPath string
	var cert sshCertAnswer
	if *sshKey != "" {
		if certPath, cert, err = e.issueSSHCert(ctx, &client{e: e, gateway: gw, token: ans.Token}, *sshKey, 0); err != nil {
			return e.fail(fmt.Errorf("logged in, but no SSH certificate: %w", err))
		}
	}
	if *printToken {
		fmt.Fprintln(e.stdout, ans.Token)
		return exitOK
	}
	groups := ""
	if len(ans.Groups) > 0 {
		groups = ", groups " + strings.Join(ans.Groups, ",")
	}
	via := ""
	if ans.Provider != "" {
		via = " via " + ans.Provider
	}
	fmt.Fprintf(e.stdout, "Logged in to %s as %s%s (role %s%s) until %s.\nToken saved to %s.\n",
		gw, ans.User, via, ans.Role, groups, ans.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST"), path)
	if certPath != "" {
		e.printSSHCert(certPath, cert)
	}
	return exitOK
}

// post sends body as JSON and decodes the answer into out.
func (c *client) post(ctx context.Context, path string, body, out any) error {
	res, err := c.request(ctx, http.MethodPost, path, nil, body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browserLogin runs the authorization-code flow with PKCE: the CLI keeps the verifier and the
// state, receives the code on a loopback redirect (RFC 8252), and the gateway redeems it with
// the provider (it holds the client secret, if any, and keeps the refresh token).
func (e *env) browserLogin(ctx context.Context, c *client, provider string, noBrowser bool) (loginAnswer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loginAnswer{}, fmt.Errorf("open the loopback redirect: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)
	verifier, state, nonce := randomString(32), randomString(16), randomString(16)
	sum := sha256.Sum256([]byte(verifier))
	var auth struct {
		URL      string `json:"url"`
		Provider string `json:"provider"`
	}
	if err := c.post(ctx, "/api/v1/auth/oidc/authorize", map[string]string{"provider": provider, "redirect_uri": redirect,
		"state": state, "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]), "nonce": nonce}, &auth); err != nil {
		return loginAnswer{}, err
	}
	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the login redirect carried another state: ignored (was it started elsewhere?)")
			http.Error(w, "Airlock: unexpected state; this login was not started here.", http.StatusBadRequest)
			return // keep waiting for the real one
		case q.Get("error") != "":
			res.err = fmt.Errorf("the identity provider refused the login: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			res.err = errors.New("the login redirect carried no code")
		default:
			res.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			fmt.Fprintln(w, "<p>Airlock login failed; see the terminal.</p>")
		} else {
			fmt.Fprintln(w, "<p>Airlock login complete; you may close this window.</p>")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	opened := false
	if !noBrowser {
		opened = openBrowser(auth.URL) == nil
	}
	if opened {
		fmt.Fprintf(e.stderr, "Opened a browser to log in with %s. If it did not appear, open:\n  %s\n", auth.Provider, auth.URL)
	} else {
		fmt.Fprintf(e.stderr, "Open this URL in a browser to log in with %s:\n  %s\n", auth.Provider, auth.URL)
	}
	fmt.Fprintf(e.stderr, "Waiting for the login to complete (redirect to %s)...\n", redirect)
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return loginAnswer{}, errors.New("timed out waiting for the browser login")
	}
	if res.err != nil {
		return loginAnswer{}, res.err
	}
	var ans loginAnswer
	err = c.post(ctx, "/api/v1/auth/oidc/exchange", map[string]string{"provider": auth.Provider, "code": res.code,
		"code_verifier": verifier, "redirect_uri": redirect, "nonce": nonce}, &ans)
	return ans, err
}

// openBrowser opens u in the desktop's browser, when there is a desktop.
func openBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no display")
		}
		cmd = exec.Command("xdg-open", u)
	}
	return cmd.Start()
}

// deviceLogin runs the device flow: the gateway starts it with the provider, the user enters
// the code on any device, and the gateway waits for the approval.
func (e *env) deviceLogin(ctx context.Context, c *client, provider string) (loginAnswer, error) {
	var da struct {
		Provider                string    `json:"provider"`
		DeviceCode              string    `json:"device_code"`
		UserCode                string    `json:"user_code"`
		VerificationURI         string    `json:"verification_uri"`
		VerificationURIComplete string    `json:"verification_uri_complete"`
		ExpiresAt               time.Time `json:"expires_at"`
		Interval                int64     `json:"interval"`
	}
	if err := c.post(ctx, "/api/v1/auth/oidc/device", map[string]string{"provider": provider}, &da); err != nil {
		return loginAnswer{}, err
	}
	fmt.Fprintf(e.stderr, "To log in with %s, open %s and enter the code %s", da.Provider, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(e.stderr, "\n  (or open %s)", da.VerificationURIComplete)
	}
	fmt.Fprintln(e.stderr, "\nWaiting for the approval...")
	var ans loginAnswer
	err := c.post(ctx, "/api/v1/auth/oidc/device/wait", map[string]any{"provider": da.Provider, "device_code": da.DeviceCode,
		"interval": da.Interval, "expires_at": da.ExpiresAt}, &ans)
	return ans, err
}

// refreshSaved renews a saved OIDC token that has expired or is about to, so that commands keep
// working while the IdP session lives. It returns the credentials to use.
func (e *env) refreshSaved(saved credentials) credentials {
	if !saved.Refreshable || saved.Token == "" || e.now().Add(time.Minute).Before(saved.ExpiresAt) {
		return saved
	}
	c := &client{e: e, gateway: normalizeGateway(saved.Gateway)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ans loginAnswer
	if err := c.post(ctx, "/api/v1/auth/refresh", map[string]string{"token": saved.Token}, &ans); err != nil || ans.Token == "" {
		fmt.Fprintf(e.stderr, "airlock: the saved login could not be refreshed (%v); run airlock login\n", err)
		return saved
	}
	saved.Token, saved.ExpiresAt, saved.User = ans.Token, ans.ExpiresAt, ans.User
	if _, err := e.saveCredentials(saved); err != nil {
		fmt.Fprintf(e.stderr, "airlock: %v\n", err)
	}
	return saved
}

func runLogout(e *env, args []string) int {
	fs := e.newFlagSet("logout", "logout")
	if _, err := parseArgs(fs, args); err != nil {
		return usageCode(err)
	}
	saved, err := e.loadCredentials()
	if err != nil {
		return e.fail(err)
	}
	if saved.Token == "" {
		fmt.Fprintln(e.stderr, "Not logged in.")
		return exitOK
	}
	c := &client{e: e, gateway: normalizeGateway(saved.Gateway), token: saved.Token}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ans map[string]any
	rerr := c.post(ctx, "/api/v1/auth/logout", nil, &ans)
	saved.Token, saved.Refreshable = "", false
	if _, err := e.saveCredentials(saved); err != nil {
		return e.fail(err)
	}
	if ae := (*apiError)(nil); rerr != nil && !(errors.As(rerr, &ae) && ae.Status == http.StatusUnauthorized) {
		return e.fail(fmt.Errorf("the token was forgotten here but not revoked at the gateway: %w", rerr))
	}
	fmt.Fprintf(e.stdout, "Logged out of %s.\n", saved.Gateway)
	return exitOK
}

func runTokens(e *env, args []string) int {
	const usage = "tokens revoke USER"
	if len(args) != 2 || args[0] != "revoke" {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", usage)
		return exitUsage
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	var ans struct {
		User      string    `json:"user"`
		RevokedAt time.Time `json:"revoked_at"`
	}
	if err := c.post(context.Background(), "/api/v1/auth/revoke", map[string]string{"user": args[1]}, &ans); err != nil {
		return e.fail(err)
	}
	fmt.Fprintf(e.stdout, "Revoked every token of %s issued until %s.\n", ans.User, ans.RevokedAt.Local().Format("2006-01-02 15:04:05.000 MST"))
	return exitOK
}

// readSecret prompts on a terminal without echo, or reads the first line of stdin.
func (e *env) readSecret(prompt string) (string, error) {
	if e.stdinTerminal && e.readPassword != nil {
		fmt.Fprint(e.stderr, prompt)
		b, err := e.readPassword()
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on stdin (pipe it in, or run from a terminal to be prompted)")
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password on stdin")
	}
	return line, nil
}
