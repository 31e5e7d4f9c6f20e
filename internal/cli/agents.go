package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/airlock-gw/airlock/internal/agent"
)

func init() {
	register("agents", "register, list and revoke network-resident agents (admin)", func(args []string) int {
		return runAgents(osEnv(), args)
	})
}

const agentsUsage = `agents create NAME [--json]
       airlock agents list [--json]
       airlock agents revoke NAME`

func runAgents(e *env, args []string) int {
	return dispatch(e, "agents", agentsUsage, args, map[string]func(*env, []string) int{
		"create": runAgentsCreate,
		"list":   runAgentsList,
		"ls":     runAgentsList,
		"revoke": runAgentsRevoke,
	})
}

func runAgentsCreate(e *env, args []string) int {
	fs := e.newFlagSet("agents create", "agents create NAME [--json]")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	arg, c, code, ok := e.oneArg(fs, args, agentsUsage)
	if !ok {
		return code
	}
	var ans struct {
		Agent agent.Info `json:"agent"`
		Token string     `json:"token"`
	}
	if err := c.post(context.Background(), "/api/v1/agents", map[string]any{"name": arg}, &ans); err != nil {
		return e.fail(err)
	}
	if *asJSON {
		b, _ := json.Marshal(ans)
		return exitCode(e, printJSON(e.stdout, b))
	}
	fmt.Fprintf(e.stderr, "Registered agent %s. Its join token is shown this once; it carries the gateway's agent\n"+
		"address, the pin of its TLS certificate and the agent's secret. On a host of the private network:\n"+
		"  airlock agent --token TOKEN --config agent.yaml\n", ans.Agent.Name)
	fmt.Fprintln(e.stdout, ans.Token)
	return exitOK
}

func runAgentsList(e *env, args []string) int {
	var ans struct {
		Agents    []agent.Info `json:"agents"`
		Listening bool         `json:"listening"`
	}
	if done, code := listing(e, "agents list", "/api/v1/agents", args, &ans); done {
		return code
	}
	if !ans.Listening {
		fmt.Fprintln(e.stderr, "This gateway has no agent listener (listen.agents is off).")
	}
	if len(ans.Agents) == 0 {
		fmt.Fprintln(e.stderr, "No agents.")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tVERSION\tTARGETS\tSESSIONS\tLAST SEEN")
	for _, a := range ans.Agents {
		state := "disconnected"
		switch {
		case !a.RevokedAt.IsZero():
			state = "revoked by " + a.RevokedBy
		case a.Draining:
			state = "draining"
		case a.Connections > 1:
			state = fmt.Sprintf("connected (%d tunnels)", a.Connections)
		case a.Connected:
			state = "connected"
		}
		seen := "never"
		if !a.LastSeen.IsZero() {
			seen = a.LastSeen.Local().Format("2006-01-02 15:04:05 MST")
		}
		version := a.Version
		if version == "" {
			version = "-"
		}
		targets := strings.Join(a.Targets, ",")
		if targets == "" {
			targets = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", a.Name, state, version, targets, a.Sessions, seen)
	}
	return exitCode(e, tw.Flush())
}

func runAgentsRevoke(e *env, args []string) int {
	return revokeOne(e, "agents revoke", agentsUsage, "/api/v1/agents/%s/revoke", "Revoked agent %s: its token is refused and its tunnels were dropped.", args)
}
