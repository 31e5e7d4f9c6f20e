package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

func init() {
	register("kube-credential", "kubectl credential plugin: print the saved gateway token as an ExecCredential", func(args []string) int {
		return runKubeCredential(osEnv(), args)
	})
}

const kubeCredentialUsage = `kube-credential [--target TARGET]

A client-go exec credential plugin (run by kubectl through the kubeconfig from ` + "`airlock kubeconfig`" + `):
prints an ExecCredential whose token is USER:TOKEN, the user and token that ` + "`airlock login`" + ` saved
(AIRLOCK_USER and AIRLOCK_TOKEN override them). With --target the token is @TARGET/USER:TOKEN, so
that requests whose path the client replaced (kubectl get --raw) still reach TARGET.`

// execCredential is client.authentication.k8s.io's ExecCredential.
type execCredential struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		Token               string     `json:"token"`
		ExpirationTimestamp *time.Time `json:"expirationTimestamp,omitempty"`
	} `json:"status"`
}

func runKubeCredential(e *env, args []string) int {
	fs := e.newFlagSet("kube-credential", kubeCredentialUsage)
	target := fs.String("target", "", "the kubernetes target the token is for")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock kube-credential: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	saved, err := e.loadCredentials()
	if err != nil {
		return e.fail(err)
	}
	saved = e.refreshSaved(saved)
	user, token, expires := saved.User, saved.Token, saved.ExpiresAt
	if v := e.getenv("AIRLOCK_TOKEN"); v != "" {
		token, expires = v, time.Time{}
	}
	if v := e.getenv("AIRLOCK_USER"); v != "" {
		user = v
	}
	if user == "" || token == "" {
		return e.fail(errors.New("no saved login: run airlock login (or set AIRLOCK_USER and AIRLOCK_TOKEN)"))
	}
	if !expires.IsZero() && !e.now().Before(expires) {
		return e.fail(fmt.Errorf("the saved token expired at %s: run airlock login", expires.Format(time.RFC3339)))
	}
	var ec execCredential
	ec.APIVersion = "client.authentication.k8s.io/v1"
	// kubectl says which version it speaks in KUBERNETES_EXEC_INFO; answer in it.
	if info := e.getenv("KUBERNETES_EXEC_INFO"); info != "" {
		var in struct {
			APIVersion string `json:"apiVersion"`
		}
		if json.Unmarshal([]byte(info), &in) == nil && strings.HasPrefix(in.APIVersion, "client.authentication.k8s.io/") {
			ec.APIVersion = in.APIVersion
		}
	}
	ec.Kind = "ExecCredential"
	ec.Status.Token = user + ":" + token
	if *target != "" {
		ec.Status.Token = "@" + *target + "/" + ec.Status.Token
	}
	if !expires.IsZero() {
		t := expires.UTC()
		ec.Status.ExpirationTimestamp = &t
	}
	b, _ := json.Marshal(ec)
	fmt.Fprintf(e.stdout, "%s\n", b)
	return exitOK
}
