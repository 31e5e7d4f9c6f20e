package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/termsafe"
)

func init() {
	register("requests", "list statements waiting for approval; approve or deny one (admin)", func(args []string) int {
		return runRequests(osEnv(), args)
	})
}

const requestsUsage = `requests list [--json]
       airlock requests approve ID [--reason R] [--json]
       airlock requests deny ID [--reason R] [--json]`

func runRequests(e *env, args []string) int {
	return dispatch(e, "requests", requestsUsage, args, map[string]func(*env, []string) int{
		"list":    runRequestsList,
		"ls":      runRequestsList,
		"approve": func(e *env, args []string) int { return runRequestsDecide(e, "approve", args) },
		"deny":    func(e *env, args []string) int { return runRequestsDecide(e, "deny", args) },
	})
}

// approvalRequest is a pending request as the API lists it: the broker's own type.
type approvalRequest = approval.Pending

func runRequestsList(e *env, args []string) int {
	var ans struct {
		Requests []approvalRequest `json:"requests"`
	}
	if done, code := listing(e, "requests list", "/api/v1/requests", args, &ans); done {
		return code
	}
	if len(ans.Requests) == 0 {
		fmt.Fprintln(e.stderr, "No requests waiting for approval.")
		return exitOK
	}
	now := e.now()
	// The statement is the requester's: its controls are printed as escapes (termsafe), or
	// it could redraw the line and show the approver another statement than the one pending.
	tw := tabwriter.NewWriter(termsafe.Writer{W: e.stdout}, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTARGET\tSESSION\tRULE\tEXPIRES IN\tSTATEMENT")
	for _, r := range ans.Requests {
		left := r.ExpiresAt.Sub(now).Truncate(time.Second)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.User, r.Target, dash(r.Session), dash(r.Rule), left, oneLine(r.Statement, 80))
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

// oneLine folds whitespace so a statement fits a table row, cut at n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func runRequestsDecide(e *env, verb string, args []string) int {
	usage := "requests " + verb + " ID [--reason R] [--json]"
	fs := e.newFlagSet("requests "+verb, usage)
	reason := fs.String("reason", "", "why, kept in the audit log and told to the requester")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	arg, c, code, ok := e.oneArg(fs, args, usage)
	if !ok {
		return code
	}
	res, err := c.request(context.Background(), http.MethodPost, "/api/v1/requests/"+url.PathEscape(arg)+"/"+verb,
		nil, map[string]string{"reason": *reason})
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
	var ans struct{ Approved bool }
	if err := json.Unmarshal(raw, &ans); err != nil {
		return e.fail(fmt.Errorf("decode answer: %w", err))
	}
	if ans.Approved {
		fmt.Fprintf(e.stdout, "Approved request %s: the statement goes on.\n", arg)
	} else {
		fmt.Fprintf(e.stdout, "Denied request %s: the statement is refused.\n", arg)
	}
	return exitOK
}
