package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/airlock-gw/airlock/internal/target"
)

func init() {
	register("targets", "list targets, or register one (admin)", func(args []string) int {
		return runTargets(osEnv(), args)
	})
}

const targetsUsage = `targets list [--json]
       airlock targets add NAME --type postgres --address HOST:PORT [--database D] [--username U]
                           [--password-stdin | --password-env VAR] [--tls MODE] [--label K=V ...] [--json]`

func runTargets(e *env, args []string) int {
	return dispatch(e, "targets", targetsUsage, args, map[string]func(*env, []string) int{
		"list": runTargetsList,
		"ls":   runTargetsList,
		"add":  runTargetsAdd,
	})
}

func runTargetsList(e *env, args []string) int {
	var ans struct {
		Targets []target.Target `json:"targets"`
	}
	if done, code := listing(e, "targets list", "/api/v1/targets", args, &ans); done {
		return code
	}
	if len(ans.Targets) == 0 {
		fmt.Fprintln(e.stderr, "No targets.")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tADDRESS\tDATABASE\tUSERNAME\tTLS\tSOURCE\tLABELS")
	for _, t := range ans.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Type, t.Address, dash(t.Database),
			dash(t.Username), dash(t.TLS), t.Source, dash(formatLabels(t.Labels)))
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

func formatLabels(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// labelFlag collects repeated --label K=V.
type labelFlag map[string]string

func (l labelFlag) String() string { return formatLabels(l) }
func (l labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	l[k] = v
	return nil
}

func runTargetsAdd(e *env, args []string) int {
	fs := e.newFlagSet("targets add", "targets add NAME --type postgres --address HOST:PORT [flags]")
	typ := fs.String("type", "postgres", "target type (postgres, mysql)")
	address := fs.String("address", "", "HOST:PORT of the target (required)")
	database := fs.String("database", "", "default database")
	username := fs.String("username", "", "user the gateway logs in to the target as")
	passwordStdin := fs.Bool("password-stdin", false, "read the target password from the first line of stdin")
	passwordEnv := fs.String("password-env", "", "read the target password from this environment variable")
	tls := fs.String("tls", "", "upstream TLS: disable, prefer (default), require, verify-ca, verify-full")
	caFile := fs.String("ca-file", "", "CA bundle (on the gateway host) for verify-ca/verify-full")
	recording := fs.String("recording-mode", "", "strict (default: fail closed when the store cannot write) or best-effort")
	retention := fs.Int("retention-days", 0, "days recordings are kept after their session ended (0: forever)")
	labels := labelFlag{}
	fs.Var(labels, "label", "KEY=VALUE label (repeatable)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "Usage: airlock targets add NAME --type postgres --address HOST:PORT [flags]")
		return exitUsage
	}
	if *address == "" {
		fmt.Fprintln(e.stderr, "airlock targets add: --address HOST:PORT is required")
		return exitUsage
	}
	if *passwordStdin && *passwordEnv != "" {
		fmt.Fprintln(e.stderr, "airlock targets add: use either --password-stdin or --password-env, not both")
		return exitUsage
	}
	var password string
	switch {
	case *passwordStdin:
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return e.fail(fmt.Errorf("--password-stdin: no password on stdin"))
		}
		password = strings.TrimRight(line, "\r\n")
	case *passwordEnv != "":
		password = e.getenv(*passwordEnv)
		if password == "" {
			return e.fail(fmt.Errorf("--password-env: $%s is empty or unset", *passwordEnv))
		}
	}
	body := map[string]any{"name": pos[0], "type": *typ, "address": *address, "database": *database,
		"username": *username, "password": password, "tls": *tls, "ca_file": *caFile,
		"recording_mode": *recording, "retention_days": *retention}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	res, err := c.request(context.Background(), http.MethodPost, "/api/v1/targets", nil, body)
	if err != nil {
		return e.fail(err)
	}
	defer res.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		return e.fail(fmt.Errorf("decode answer: %w", err))
	}
	if *asJSON {
		if err := printJSON(e.stdout, raw); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	var ans struct{ Target target.Target }
	json.Unmarshal(raw, &ans)
	verb := "Registered"
	if res.StatusCode == http.StatusOK {
		verb = "Replaced"
	}
	fmt.Fprintf(e.stdout, "%s target %s (%s at %s).\n", verb, ans.Target.Name, ans.Target.Type, ans.Target.Address)
	return exitOK
}
