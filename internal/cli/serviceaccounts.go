package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

func init() {
	register("serviceaccounts", "create, list and revoke service accounts and their API keys (admin)", func(args []string) int {
		return runServiceAccounts(osEnv(), args)
	})
}

const serviceAccountsUsage = `serviceaccounts create NAME [--targets T1,T2] [--expires 720h] [--role user|auditor|admin] [--groups G1,G2] [--json]
       airlock serviceaccounts list [--json]
       airlock serviceaccounts revoke NAME`

type serviceAccount struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Groups    []string  `json:"groups"`
	Targets   []string  `json:"targets"`
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at"`
	RevokedBy string    `json:"revoked_by"`
	Active    bool      `json:"active"`
}

func runServiceAccounts(e *env, args []string) int {
	return dispatch(e, "serviceaccounts", serviceAccountsUsage, args, map[string]func(*env, []string) int{
		"create": runServiceAccountsCreate,
		"list":   runServiceAccountsList,
		"ls":     runServiceAccountsList,
		"revoke": runServiceAccountsRevoke,
	})
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func runServiceAccountsCreate(e *env, args []string) int {
	fs := e.newFlagSet("serviceaccounts create", "serviceaccounts create NAME [flags]")
	targets := fs.String("targets", "", "comma-separated targets the key may reach (default: every target policy allows)")
	expires := fs.String("expires", "", "lifetime of the key, like 720h (default: no expiry)")
	role := fs.String("role", "user", "role: user, auditor or admin")
	groups := fs.String("groups", "", "comma-separated groups, for policy subjects group:NAME")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	arg, c, code, ok := e.oneArg(fs, args, serviceAccountsUsage)
	if !ok {
		return code
	}
	body := map[string]any{"name": arg, "role": *role, "targets": splitList(*targets), "groups": splitList(*groups)}
	if *expires != "" {
		body["expires_in"] = *expires
	}
	var ans struct {
		ServiceAccount serviceAccount `json:"service_account"`
		APIKey         string         `json:"api_key"`
	}
	if err := c.post(context.Background(), "/api/v1/service-accounts", body, &ans); err != nil {
		return e.fail(err)
	}
	if *asJSON {
		b, _ := json.Marshal(ans)
		return exitCode(e, printJSON(e.stdout, b))
	}
	sa := ans.ServiceAccount
	fmt.Fprintf(e.stderr, "Created service account %s (role %s, targets %s, expires %s).\n", sa.Name, sa.Role,
		orAll(sa.Targets), orNever(sa.ExpiresAt))
	fmt.Fprintln(e.stderr, "Its API key is shown this once; use it as a bearer token or as the PostgreSQL password (user "+sa.Name+"):")
	fmt.Fprintln(e.stdout, ans.APIKey)
	return exitOK
}

func exitCode(e *env, err error) int {
	if err != nil {
		return e.fail(err)
	}
	return exitOK
}

func orAll(t []string) string {
	if len(t) == 0 {
		return "all"
	}
	return strings.Join(t, ",")
}

func orNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}

func runServiceAccountsList(e *env, args []string) int {
	var ans struct {
		ServiceAccounts []serviceAccount `json:"service_accounts"`
	}
	if done, code := listing(e, "serviceaccounts list", "/api/v1/service-accounts", args, &ans); done {
		return code
	}
	if len(ans.ServiceAccounts) == 0 {
		fmt.Fprintln(e.stderr, "No service accounts.")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tTARGETS\tKEY ID\tCREATED BY\tEXPIRES\tSTATE")
	for _, sa := range ans.ServiceAccounts {
		state := "active"
		switch {
		case !sa.RevokedAt.IsZero():
			state = "revoked by " + sa.RevokedBy
		case !sa.Active:
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sa.Name, sa.Role, orAll(sa.Targets), sa.KeyID, sa.CreatedBy, orNever(sa.ExpiresAt), state)
	}
	return exitCode(e, tw.Flush())
}

func runServiceAccountsRevoke(e *env, args []string) int {
	return revokeOne(e, "serviceaccounts revoke", serviceAccountsUsage, "/api/v1/service-accounts/%s/revoke", "Revoked service account %s: its API key is refused from now on.", args)
}
