package cli

import (
	"encoding/base64"
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

const kubeconfigUsage = `kubeconfig TARGET --server https://HOST:PORT [--ca-file FILE | --insecure-skip-tls-verify] [--namespace NS]

Prints a kubeconfig whose only context reaches TARGET through the gateway's kubernetes
listener (--server, or $AIRLOCK_KUBE_SERVER). Its user runs ` + "`airlock kube-credential`" + `, which
hands kubectl the token that ` + "`airlock login`" + ` saved:

    airlock kubeconfig kind-1 --server https://gw.example:16443 --ca-file gw.crt > kind-1.yaml
    kubectl --kubeconfig kind-1.yaml get pods`

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
	u, err := url.Parse(srv)
	if srv == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		fmt.Fprintln(e.stderr, "airlock kubeconfig: --server https://HOST:PORT (the gateway's kubernetes listener) is required")
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
