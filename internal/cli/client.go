package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
)

// env is what a client command touches outside itself, so that tests can run commands
// in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	http           *http.Client
	now            func() time.Time
	// sleep waits for d or until ctx is done.
	sleep func(ctx context.Context, d time.Duration)
	// stdinTerminal reports whether stdin is a terminal; readPassword reads a line from it
	// without echo.
	stdinTerminal bool
	readPassword  func() ([]byte, error)
}

func osEnv() *env {
	fd := int(os.Stdin.Fd())
	return &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		http: &http.Client{Timeout: 0}, now: time.Now,
		sleep: func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		},
		stdinTerminal: term.IsTerminal(fd),
		readPassword:  func() ([]byte, error) { return term.ReadPassword(fd) },
	}
}

// Exit codes of the client commands.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// credentials is what airlock login saves.
type credentials struct {
	Gateway   string    `json:"gateway"`
	User      string    `json:"user"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	// Provider and Refreshable are set for an OIDC login whose token the CLI renews (login.go).
	Provider    string `json:"provider,omitempty"`
	Refreshable bool   `json:"refreshable,omitempty"`
}

// credentialsPath is $XDG_CONFIG_HOME/airlock/credentials.json, ~/.config/airlock/ by default.
func (e *env) credentialsPath() (string, error) {
	dir := e.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := e.getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("cannot find the credentials directory: set XDG_CONFIG_HOME or HOME")
			}
			home = h
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "airlock", "credentials.json"), nil
}

func (e *env) loadCredentials() (credentials, error) {
	var c credentials
	p, err := e.credentialsPath()
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read credentials %s: %w", p, err)
	}
	return c, nil
}

// saveCredentials writes c readable by the user only, replacing the file atomically.
func (e *env) saveCredentials(c credentials) (string, error) {
	p, err := e.credentialsPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	f, err := os.CreateTemp(dir, ".credentials-*.json")
	if err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	return p, nil
}

// normalizeGateway accepts host:port and adds http://.
func normalizeGateway(s string) string {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}

// client talks to the gateway's API.
type client struct {
	e       *env
	gateway string
	token   string
}

// newClient resolves the gateway and token: AIRLOCK_GATEWAY and AIRLOCK_TOKEN override what
// airlock login saved. The saved token goes only to the gateway it was saved for: with
// AIRLOCK_GATEWAY naming another one (and no AIRLOCK_TOKEN), none is sent.
func (e *env) newClient() (*client, error) {
	saved, err := e.loadCredentials()
	if err != nil {
		return nil, err
	}
	saved = e.refreshSaved(saved)
	c := &client{e: e, gateway: normalizeGateway(saved.Gateway), token: saved.Token}
	if v := normalizeGateway(e.getenv("AIRLOCK_GATEWAY")); v != "" && v != c.gateway {
		if c.token != "" && e.getenv("AIRLOCK_TOKEN") == "" {
			fmt.Fprintf(e.stderr, "airlock: the saved login is for %s, not %s: its token is not sent there (set AIRLOCK_TOKEN, or airlock login --gateway %s)\n", c.gateway, v, v)
		}
		c.gateway, c.token = v, ""
	}
	if v := e.getenv("AIRLOCK_TOKEN"); v != "" {
		c.token = v
	}
	if c.gateway == "" {
		return nil, errors.New("no gateway: run airlock login --gateway URL --user NAME, or set AIRLOCK_GATEWAY")
	}
	return c, nil
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, strings.ToLower(http.StatusText(e.Status)), e.Message)
	if e.Status == http.StatusUnauthorized {
		msg += " (run airlock login)"
	}
	return msg
}

// request sends a request and returns the response when its status is 2xx; otherwise the JSON
// error body becomes an *apiError.
func (c *client) request(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	u := c.gateway + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("bad gateway URL %q: %w", c.gateway, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.e.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the gateway at %s: %w", c.gateway, err)
	}
	if res.StatusCode/100 == 2 {
		return res, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	ae := &apiError{Status: res.StatusCode}
	var j struct{ Error, Code string }
	if json.Unmarshal(b, &j) == nil && j.Error != "" {
		ae.Message, ae.Code = j.Error, j.Code
	} else {
		ae.Message = strings.TrimSpace(string(b))
		if ae.Message == "" {
			ae.Message = "no details"
		}
	}
	return nil, ae
}

// getJSON GETs path and decodes the answer into out; raw, when non-nil, receives the body.
func (c *client) getJSON(ctx context.Context, path string, query url.Values, out any, raw *[]byte) error {
	res, err := c.request(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	if raw != nil {
		*raw = b
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer of %s: %w", path, err)
		}
	}
	return nil
}

// fail prints err the way every command does and returns the failure exit code.
func (e *env) fail(err error) int {
	fmt.Fprintf(e.stderr, "airlock: %v\n", err)
	return exitFailure
}

// parseArgs parses flags that may come before, between or after positional arguments
// (airlock replay ID --speed 0), and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// oneArg is the start of a command that takes exactly one positional argument and talks to the
// gateway: it parses args with fs and makes the client. ok false: the command is over, with code
// (help, a usage error printed as "Usage: airlock USAGE", or no client).
func (e *env) oneArg(fs *flag.FlagSet, args []string, usage string) (arg string, c *client, code int, ok bool) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", nil, usageCode(err), false
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", usage)
		return "", nil, exitUsage, false
	}
	if c, err = e.newClient(); err != nil {
		return "", nil, e.fail(err), false
	}
	return pos[0], c, exitOK, true
}

// newFlagSet returns a FlagSet that reports to stderr.
func (e *env) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// usageCode maps a flag parsing error to an exit code: -h is success, anything else usage.
func usageCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// printJSON writes b indented.
func printJSON(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		_, err = w.Write(b)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// listing is the shared part of a "NOUN list [--json]" command: no arguments, GET path into
// ans, and with --json the API's JSON printed as it came (done is then true). Otherwise the
// caller prints ans its own way.
func listing(e *env, name, path string, args []string, ans any) (done bool, code int) {
	fs := e.newFlagSet(name, name+" [--json]")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return true, usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock %s: unexpected argument %q\n", name, pos[0])
		return true, exitUsage
	}
	c, err := e.newClient()
	if err != nil {
		return true, e.fail(err)
	}
	var raw []byte
	if err := c.getJSON(context.Background(), path, nil, ans, &raw); err != nil {
		return true, e.fail(err)
	}
	if *asJSON {
		return true, exitCode(e, printJSON(e.stdout, raw))
	}
	return false, exitOK
}

// revokeOne is the shared part of a "NOUN revoke NAME" command: POST to the route (with the
// name path-escaped into path's %s) and print what it did (done, with the name for %s).
func revokeOne(e *env, name, usage, path, done string, args []string) int {
	fs := e.newFlagSet(name, name+" NAME")
	arg, c, code, ok := e.oneArg(fs, args, usage)
	if !ok {
		return code
	}
	var ans map[string]any
	if err := c.post(context.Background(), fmt.Sprintf(path, url.PathEscape(arg)), nil, &ans); err != nil {
		return e.fail(err)
	}
	fmt.Fprintf(e.stdout, done+"\n", arg)
	return exitOK
}

// dispatch runs the subcommand args[0] of "airlock NOUN" from subs (an alias is one more key),
// prints usage for -h, --help and help, and refuses a missing or unknown subcommand.
func dispatch(e *env, noun, usage string, args []string, subs map[string]func(*env, []string) int) int {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage: airlock %s\n", usage)
		return exitOK
	}
	if run, ok := subs[args[0]]; ok {
		return run(e, args[1:])
	}
	fmt.Fprintf(e.stderr, "airlock %s: unknown subcommand %q\nUsage: airlock %s\n", noun, args[0], usage)
	return exitUsage
}
