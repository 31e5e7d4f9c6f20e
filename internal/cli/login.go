package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

func init() {
	register("login", "log in to a gateway and save a token", func(args []string) int {
		return runLogin(osEnv(), args)
	})
}

func runLogin(e *env, args []string) int {
	fs := e.newFlagSet("login", "login --gateway URL --user NAME [--print-token]")
	gateway := fs.String("gateway", "", "gateway API URL, like http://127.0.0.1:8009 (default: $AIRLOCK_GATEWAY or the saved one)")
	user := fs.String("user", "", "user name (default: the saved one)")
	printToken := fs.Bool("print-token", false, "print only the token (for PGPASSWORD=$(airlock login ... --print-token))")
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
	name := *user
	if name == "" && saved.Gateway == gw {
		name = saved.User
	}
	if name == "" {
		fmt.Fprintln(e.stderr, "airlock login: --user NAME is required")
		return exitUsage
	}
	password, err := e.readSecret(fmt.Sprintf("Password for %s at %s: ", name, gw))
	if err != nil {
		return e.fail(err)
	}

	c := &client{e: e, gateway: gw}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.request(ctx, http.MethodPost, "/api/v1/auth/login", nil, map[string]string{"username": name, "password": password})
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return e.fail(fmt.Errorf("login to %s as %s failed: %s", gw, name, ae.Message))
		}
		return e.fail(err)
	}
	defer res.Body.Close()
	var ans struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		User      string    `json:"user"`
		Role      string    `json:"role"`
		Groups    []string  `json:"groups"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || ans.Token == "" {
		return e.fail(fmt.Errorf("login: unexpected answer from %s: %v", gw, err))
	}
	path, err := e.saveCredentials(credentials{Gateway: gw, User: ans.User, Token: ans.Token, ExpiresAt: ans.ExpiresAt})
	if err != nil {
		return e.fail(err)
	}
	if *printToken {
		fmt.Fprintln(e.stdout, ans.Token)
		return exitOK
	}
	groups := ""
	if len(ans.Groups) > 0 {
		groups = ", groups " + strings.Join(ans.Groups, ",")
	}
	fmt.Fprintf(e.stdout, "Logged in to %s as %s (role %s%s) until %s.\nToken saved to %s.\n",
		gw, ans.User, ans.Role, groups, ans.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST"), path)
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
