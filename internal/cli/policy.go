package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"

	"github.com/airlock-gw/airlock/internal/config"
)

func init() {
	register("policy", "list policies, explain a decision, replace the API-managed policies (admin)", func(args []string) int {
		return runPolicy(osEnv(), args)
	})
}

const policyUsage = `policy list [--json]
       airlock policy explain --user NAME --target NAME [--groups a,b] [--role user] [--json]
       airlock policy set -f rules.yaml [--json]`

func runPolicy(e *env, args []string) int {
	return dispatch(e, "policy", policyUsage, args, map[string]func(*env, []string) int{
		"list":    runPolicyList,
		"ls":      runPolicyList,
		"explain": runPolicyExplain,
		"set":     runPolicySet,
	})
}

// policyView is a rule as the API lists it.
type policyView struct {
	config.Policy
	Source string `json:"source"`
}

func runPolicyList(e *env, args []string) int {
	var ans struct {
		Policies []policyView `json:"policies"`
	}
	if done, code := listing(e, "policy list", "/api/v1/policies", args, &ans); done {
		return code
	}
	if len(ans.Policies) == 0 {
		fmt.Fprintln(e.stderr, "No policies: every authenticated user reaches every target, recorded.")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSUBJECTS\tTARGETS\tACCESS\tRECORDING\tMASKING\tGUARDRAILS\tMAX\tSOURCE")
	for _, p := range ans.Policies {
		maxDur := ""
		if p.MaxDuration > 0 {
			maxDur = p.MaxDuration.String()
		}
		guard := p.Guardrails
		for _, g := range p.GuardrailRules {
			guard = append(guard, "rule:"+g.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, strings.Join(p.Subjects, ","), strings.Join(p.Targets, ","),
			dash(p.Access), dash(p.Recording), dash(strings.Join(p.Masking, ",")), dash(strings.Join(guard, ",")), dash(maxDur), p.Source)
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

func runPolicyExplain(e *env, args []string) int {
	fs := e.newFlagSet("policy explain", "policy explain --user NAME --target NAME [--groups a,b] [--role user] [--json]")
	user := fs.String("user", "", "user to explain the decision for (required)")
	tgt := fs.String("target", "", "target name (required)")
	groups := fs.String("groups", "", "comma-separated groups, for a user the gateway does not know locally")
	role := fs.String("role", "", "role (user, auditor, admin), for a user the gateway does not know locally")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock policy explain: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if *user == "" || *tgt == "" {
		fmt.Fprintln(e.stderr, "airlock policy explain: --user and --target are required")
		return exitUsage
	}
	q := url.Values{"user": {*user}, "target": {*tgt}}
	if *groups != "" {
		q.Set("groups", *groups)
	}
	if *role != "" {
		q.Set("role", *role)
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	var ans struct {
		Text string `json:"text"`
	}
	var raw []byte
	if err := c.getJSON(context.Background(), "/api/v1/policies/explain", q, &ans, &raw); err != nil {
		return e.fail(err)
	}
	if *asJSON {
		if err := printJSON(e.stdout, raw); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	fmt.Fprint(e.stdout, ans.Text)
	return exitOK
}

func runPolicySet(e *env, args []string) int {
	fs := e.newFlagSet("policy set", "policy set -f rules.yaml [--json]")
	file := fs.String("f", "", "YAML list of policies, the shape of the config's `policies:` (- for stdin; required)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock policy set: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if *file == "" {
		fmt.Fprintln(e.stderr, "airlock policy set: -f FILE is required")
		return exitUsage
	}
	var b []byte
	if *file == "-" {
		b, err = io.ReadAll(e.stdin)
	} else {
		b, err = os.ReadFile(*file)
	}
	if err != nil {
		return e.fail(fmt.Errorf("read policies: %w", err))
	}
	rules, err := parsePolicies(b)
	if err != nil {
		return e.fail(fmt.Errorf("%s: %w", *file, err))
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	res, err := c.request(context.Background(), http.MethodPut, "/api/v1/policies", nil, map[string]any{"policies": rules})
	if err != nil {
		return e.fail(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return e.fail(fmt.Errorf("read answer: %w", err))
	}
	if *asJSON {
		if err := printJSON(e.stdout, raw); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	fmt.Fprintf(e.stdout, "Set %d API-managed policies.\n", len(rules))
	return exitOK
}

// parsePolicies reads a YAML list of policies; unknown keys are refused, as in the config.
func parsePolicies(b []byte) ([]config.Policy, error) {
	rules := []config.Policy{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse policies (a YAML list, like the config's policies:): %w", err)
	}
	return rules, nil
}
