package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

func init() {
	register("kubeconfig", "print a kubeconfig that reaches a kubernetes target through the gateway", func(args []string) int {
		return runKubeconfig(osEnv(), args)
	})
}

const kubeconfigUsage = `kubeconfig TARGET [--server https://HOST:PORT] [--ca-file FILE | --insecure-skip-tls-verify] [--namespace NS]

Prints a kubeconfig whose only context reaches TARGET through the gateway's kubernetes
listener. Its user runs ` + "`airlock kube-credential`" + `, which hands kubectl the token that
` + "`airlock login`" + ` saved. Without --server (or $AIRLOCK_KUBE_SERVER) it asks the gateway you logged
in to (GET /api/v1/listeners) where the listener is and which certificate it presents, and
checks that TARGET is a kubernetes target:

    airlock kubeconfig kind-1 > kind-1.yaml
    kubectl --kubeconfig kind-1.yaml get pods

With --server it works offline: --ca-file names the certificate the listener's chains to
(default: the system's roots).`

// kubeconfig is the subset of the kubeconfig format the command writes.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Users          []namedUser    `yaml:"users"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
}

type namedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data,omitempty"`
		InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify,omitempty"`
	} `yaml:"cluster"`
}

type namedUser struct {
	Name string `yaml:"name"`
	User struct {
		Exec kubeExec `yaml:"exec"`
	} `yaml:"user"`
}

type kubeExec struct {
	APIVersion      string   `yaml:"apiVersion"`
	Command         string   `yaml:"command"`
	Args            []string `yaml:"args"`
	InteractiveMode string   `yaml:"interactiveMode"`
	InstallHint     string   `yaml:"installHint"`
}

type namedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster   string `yaml:"cluster"`
		User      string `yaml:"user"`
		Namespace string `yaml:"namespace,omitempty"`
	} `yaml:"context"`
}

func runKubeconfig(e *env, args []string) int {
	fs := e.newFlagSet("kubeconfig", kubeconfigUsage)
	server := fs.String("server", "", "the gateway's kubernetes listener, https://HOST:PORT (default $AIRLOCK_KUBE_SERVER)")
	caFile := fs.String("ca-file", "", "PEM certificate that the gateway's TLS certificate chains to (default: the system's roots)")
	insecure := fs.Bool("insecure-skip-tls-verify", false, "do not verify the gateway's certificate (tests only)")
	namespace := fs.String("namespace", "", "the context's default namespace")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "usage: airlock "+kubeconfigUsage)
		return exitUsage
	}
	tname := pos[0]
	srv := *server
	if srv == "" {
		srv = e.getenv("AIRLOCK_KUBE_SERVER")
	}
	var apiCA []byte // the listener's certificate, as the gateway's API reported it
	if srv == "" {
		// Ask the gateway (airlock login saved where it is): where its kubernetes listener is,
		// the certificate it presents, and whether TARGET is a kubernetes target.
		if srv, apiCA, err = kubeListener(e, tname); err != nil {
			return e.fail(err)
		}
	}
	u, err := url.Parse(srv)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		fmt.Fprintln(e.stderr, "airlock kubeconfig: --server must be https://HOST:PORT (the gateway's kubernetes listener)")
		return exitUsage
	}
	saved, err := e.loadCredentials()
	if err != nil {
		return e.fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return e.fail(fmt.Errorf("cannot find the airlock binary for the credential plugin: %w", err))
	}
	name := "airlock-" + tname
	var cl namedCluster
	cl.Name = name
	cl.Cluster.Server = strings.TrimRight(srv, "/") + "/k8s/" + url.PathEscape(tname)
	switch {
	case *caFile != "":
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return e.fail(err)
		}
		cl.Cluster.CertificateAuthorityData = base64.StdEncoding.EncodeToString(pem)
	case *insecure:
		cl.Cluster.InsecureSkipTLSVerify = true
	case apiCA != nil:
		cl.Cluster.CertificateAuthorityData = base64.StdEncoding.EncodeToString(apiCA)
	}
	var us namedUser
	us.Name = name
	if saved.User != "" {
		us.Name = saved.User + "@" + name
	}
	us.User.Exec = kubeExec{APIVersion: "client.authentication.k8s.io/v1", Command: self, Args: []string{"kube-credential", "--target", tname},
		InteractiveMode: "Never", InstallHint: "Install the airlock CLI and run `airlock login`."}
	var ctx namedContext
	ctx.Name = name
	ctx.Context.Cluster, ctx.Context.User, ctx.Context.Namespace = name, us.Name, *namespace
	kc := kubeconfig{APIVersion: "v1", Kind: "Config", Clusters: []namedCluster{cl}, Users: []namedUser{us},
		Contexts: []namedContext{ctx}, CurrentContext: name}
	b, err := yaml.Marshal(kc)
	if err != nil {
		return e.fail(err)
	}
	e.stdout.Write(b)
	return exitOK
}

// kubeListener asks the gateway's API for its kubernetes listener (https://HOST:PORT), the PEM
// certificate chain it presents, and checks that tname is a kubernetes target.
func kubeListener(e *env, tname string) (server string, ca []byte, err error) {
	c, err := e.newClient()
	if err != nil {
		return "", nil, fmt.Errorf("%w (or give --server https://HOST:PORT)", err)
	}
	ctx := context.Background()
	var tg struct {
		Target struct {
			Type string `json:"type"`
		} `json:"target"`
	}
	if err := c.getJSON(ctx, "/api/v1/targets/"+url.PathEscape(tname), nil, &tg, nil); err != nil {
		return "", nil, fmt.Errorf("target %s: %w", tname, err)
	}
	if tg.Target.Type != "kubernetes" {
		return "", nil, fmt.Errorf("target %s is a %s target, not kubernetes", tname, tg.Target.Type)
	}
	var ls struct {
		Listeners []struct {
			Protocol string `json:"protocol"`
			Address  string `json:"address"`
		} `json:"listeners"`
		Certificate string `json:"certificate"`
	}
	if err := c.getJSON(ctx, "/api/v1/listeners", nil, &ls, nil); err != nil {
		return "", nil, err
	}
	for _, l := range ls.Listeners {
		if l.Protocol == "kubernetes" {
			if ls.Certificate != "" {
				ca = []byte(ls.Certificate)
			}
			return "https://" + l.Address, ca, nil
		}
	}
	return "", nil, errors.New("the gateway has no kubernetes listener (listen.kubernetes is off)")
}
