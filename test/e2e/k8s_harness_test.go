package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Kubernetes tests run a real cluster made of processes on loopback: etcd and
// kube-apiserver built from the Go module proxy by scripts/ensure-k8s.sh, and kwok, a kubelet
// stand-in that marks nodes and pods ready and runs exec, logs and port-forward as local
// processes. There is no scheduler or controller manager: pods name their node.

const (
	kubeNode = "kwok-node"
	kubePod  = "web"
)

// kubeBinDir is where scripts/ensure-k8s.sh puts the binaries ($AIRLOCK_K8S_CACHE/bin).
func kubeBinDir() string {
	if d := os.Getenv("AIRLOCK_K8S_CACHE"); d != "" {
		return filepath.Join(d, "bin")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "airlock-k8s", "bin")
}

// requireKubeBinaries skips (fails in CI) when a binary is missing, and returns the paths of
// etcd, kube-apiserver, kwok and the machine's kubectl.
func requireKubeBinaries(t testing.TB) (etcd, apiserver, kwok, kubectl string) {
	t.Helper()
	dir := kubeBinDir()
	var paths []string
	for _, name := range []string{"etcd", "kube-apiserver", "kwok"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			missing(t, "%s not built in %s (scripts/ensure-k8s.sh builds it)", name, dir)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1], paths[2], requireTool(t, "kubectl")
}

// kubeCluster is a running etcd + kube-apiserver + kwok.
type kubeCluster struct {
	t   testing.TB
	Dir string
	// URL is the API server's https://127.0.0.1:PORT; CAFile verifies it.
	URL    string
	CAFile string
	// GatewayTokenFile holds the gateway's credential for the cluster (a static token of a
	// user in system:masters, so it may impersonate).
	GatewayTokenFile string
	// GatewayCertFile and GatewayKeyFile are the same identity as a client certificate (CN
	// airlock-gateway-cert, O system:masters), which the API server accepts through
	// --client-ca-file.
	GatewayCertFile, GatewayKeyFile string
	// Kubeconfig reaches the API server directly as an administrator.
	Kubeconfig string
	kubectl    string
	// ForwardAddr is the local TCP server that `kubectl port-forward` reaches (kwok forwards
	// every pod port to it); it answers each line with "echo: LINE".
	ForwardAddr string
	// LogFile is what `kubectl logs` shows of every pod (kwok follows it).
	LogFile string
	// ExecDir is the working directory of commands run by `kubectl exec`.
	ExecDir string
}

// startKubeCluster starts a cluster in a temp dir, with one node (kwok-node) and one running
// pod (default/web), and stops it when the test ends.
func startKubeCluster(t testing.TB) *kubeCluster {
	t.Helper()
	etcdBin, apiBin, kwokBin, kubectl := requireKubeBinaries(t)
	dir := t.TempDir()
	c := &kubeCluster{t: t, Dir: dir, kubectl: kubectl, LogFile: filepath.Join(dir, "pod.log"), ExecDir: filepath.Join(dir, "exec")}
	if err := os.MkdirAll(c.ExecDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.AppendLog("web: started")
	c.ForwardAddr = echoServer(t)

	// Certificates: one CA for the API server's and kwok's serving certificates.
	ca, caKey := newCA(t, "airlock e2e kubernetes CA")
	c.CAFile = kubePEM(t, dir, "ca.crt", "CERTIFICATE", ca.Raw)
	apiCert, apiKey := newLeaf(t, ca, caKey, "kube-apiserver", []string{"localhost", "kubernetes", "kubernetes.default"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)})
	kubePEM(t, dir, "apiserver.crt", "CERTIFICATE", apiCert)
	kubePEM(t, dir, "apiserver.key", "EC PRIVATE KEY", apiKey)
	kwokCert, kwokKey := newLeaf(t, ca, caKey, "kwok", []string{"localhost", kubeNode}, []net.IP{net.IPv4(127, 0, 0, 1)})
	kubePEM(t, dir, "kwok.crt", "CERTIFICATE", kwokCert)
	kubePEM(t, dir, "kwok.key", "EC PRIVATE KEY", kwokKey)
	gwCert, gwKey := newClientLeaf(t, ca, caKey, "airlock-gateway-cert", "system:masters")
	c.GatewayCertFile = kubePEM(t, dir, "gateway-client.crt", "CERTIFICATE", gwCert)
	c.GatewayKeyFile = kubePEM(t, dir, "gateway-client.key", "EC PRIVATE KEY", gwKey)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	kubePEM(t, dir, "sa.key", "EC PRIVATE KEY", saDER)

	// Static tokens: an administrator (the tests' direct kubectl), the gateway, kwok.
	adminTok, gwTok, kwokTok := randToken(t), randToken(t), randToken(t)
	tokens := fmt.Sprintf("%s,test-admin,uid-admin,\"system:masters\"\n%s,airlock-gateway,uid-gateway,\"system:masters\"\n%s,kwok,uid-kwok,\"system:masters\"\n",
		adminTok, gwTok, kwokTok)
	os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600)
	c.GatewayTokenFile = filepath.Join(dir, "gateway.token")
	os.WriteFile(c.GatewayTokenFile, []byte(gwTok+"\n"), 0o600)

	etcdPort, etcdPeer, apiPort, kwokPort := freePort(t), freePort(t), freePort(t), freePort(t)
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.Kubeconfig = writeKubeconfig(t, dir, "admin.kubeconfig", c.URL, c.CAFile, adminTok)
	kwokKubeconfig := writeKubeconfig(t, dir, "kwok.kubeconfig", c.URL, c.CAFile, kwokTok)

	began := time.Now()
	c.start("etcd", etcdBin, "-dir", filepath.Join(dir, "etcd"),
		"-listen", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "-peer", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer))
	c.start("kube-apiserver", apiBin,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort), "--advertise-address=127.0.0.1",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(dir, "apiserver.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--client-ca-file="+c.CAFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--kubelet-certificate-authority="+c.CAFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	)
	c.waitReady(adminTok, 3*time.Minute)
	t.Logf("kube-apiserver ready at %s after %s", c.URL, time.Since(began).Round(time.Millisecond))

	kwokCfg := filepath.Join(dir, "kwok.yaml")
	os.WriteFile(kwokCfg, []byte(kwokConfig(c)), 0o644)
	c.start("kwok", kwokBin, "--config="+kwokCfg, "--kubeconfig="+kwokKubeconfig,
		"--manage-all-nodes=true", "--node-ip=127.0.0.1", fmt.Sprintf("--node-port=%d", kwokPort),
		fmt.Sprintf("--server-address=127.0.0.1:%d", kwokPort),
		"--tls-cert-file="+filepath.Join(dir, "kwok.crt"), "--tls-private-key-file="+filepath.Join(dir, "kwok.key"))

	// A node, a pod on it, and RBAC for the people the gateway impersonates: alice may do
	// anything, bob nothing (the cluster itself refuses him).
	c.apply(fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %s
  labels: {type: kwok}
---
apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
  labels: {app: web}
spec:
  nodeName: %s
  automountServiceAccountToken: false
  containers:
  - name: app
    image: registry.example/web:1
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: sys
  namespace: kube-system
spec:
  nodeName: %s
  automountServiceAccountToken: false
  containers:
  - name: app
    image: registry.example/sys:1
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: alice-admin
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
`, kubeNode, kubePod, kubeNode, kubeNode))
	r := c.kubectlDirect(3*time.Minute, nil, "wait", "--for=condition=Ready", "pod/"+kubePod, "--timeout=170s")
	if r.Code != 0 {
		c.dumpLogs()
		t.Fatalf("pod %s never became ready: %s", kubePod, r)
	}
	t.Logf("kube cluster with node and ready pod after %s", time.Since(began).Round(time.Millisecond))
	return c
}

// AppendLog adds a line to the pods' log, in the CRI format the kubelet's logs are in (kwok
// reads them as such): TIME STREAM F TEXT.
func (c *kubeCluster) AppendLog(line string) {
	c.t.Helper()
	f, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line)
}

// start runs a cluster process, logging to DIR/NAME.log; the test's cleanup stops it.
func (c *kubeCluster) start(name, bin string, args ...string) {
	c.t.Helper()
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(cleanEnv(), "HOME="+c.Dir) // kwok reads ~/.kwok
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies without its cleanups (a timeout, a kill), so does the cluster.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	c.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if c.t.Failed() {
			c.dumpLog(name)
		}
	})
}

func (c *kubeCluster) dumpLog(name string) {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	c.t.Logf("---- %s.log (last 4 KiB) ----\n%s", name, clip(string(b), 4096))
}

func (c *kubeCluster) dumpLogs() {
	for _, n := range []string{"etcd", "kube-apiserver", "kwok"} {
		c.dumpLog(n)
	}
}

// waitReady polls /readyz until the API server answers ok.
func (c *kubeCluster) waitReady(token string, within time.Duration) {
	c.t.Helper()
	pem, _ := os.ReadFile(c.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := cl.Do(req)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, clip(b.String(), 500))
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.dumpLogs()
	c.t.Fatalf("kube-apiserver not ready after %s: %s", within, last)
}

// kubectlDirect runs the machine's kubectl against the API server directly, as administrator.
func (c *kubeCluster) kubectlDirect(timeout time.Duration, stdin *strings.Reader, args ...string) cmdResult {
	env := append(cleanEnv(), "KUBECONFIG="+c.Kubeconfig, "HOME="+c.Dir)
	if stdin == nil {
		return run(timeout, env, nil, c.kubectl, args...)
	}
	return run(timeout, env, stdin, c.kubectl, args...)
}

func (c *kubeCluster) apply(yaml string) {
	c.t.Helper()
	r := c.kubectlDirect(2*time.Minute, strings.NewReader(yaml), "apply", "-f", "-")
	if r.Code != 0 {
		c.t.Fatalf("kubectl apply (direct): %s", r)
	}
}

// kwokConfig is kwok's configuration: stages that make nodes and pods ready (and let deleted
// pods go), and the rules that make exec, logs and port-forward local.
func kwokConfig(c *kubeCluster) string {
	return fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'NotIn'
      values: ['Running']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - type: Ready
        status: "True"
        reason: KubeletReady
        message: kwok is the kubelet
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      addresses:
      - type: InternalIP
        address: {{ NodeIP | Quote }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ NodePort }}
      allocatable: {cpu: "8", memory: 16Gi, pods: "110"}
      capacity: {cpu: "8", memory: 16Gi, pods: "110"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: kwok
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-running
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'NotIn'
      values: ['Running']
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Running
      hostIP: {{ NodeIP | Quote }}
      podIP: {{ NodeIP | Quote }}
      startTime: {{ $now | Quote }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-gone
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: local-exec
spec:
  execs:
  - local:
      workDir: %s
      envs:
      - {name: PATH, value: /usr/local/bin:/usr/bin:/bin}
      - {name: POD_ENV, value: kwok}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: local-logs
spec:
  logs:
  - logsFile: %s
    follow: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterAttach
metadata:
  name: local-attach
spec:
  attaches:
  - logsFile: %s
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: local-forward
spec:
  forwards:
  - target:
      port: %s
      address: 127.0.0.1
`, yq(c.ExecDir), yq(c.LogFile), yq(c.LogFile), portOf(c.ForwardAddr))
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func writeKubeconfig(t testing.TB, dir, name, server, caFile, token string) string {
	p := filepath.Join(dir, name)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %s, certificate-authority: %s}
users:
- name: u
  user: {token: %s}
contexts:
- name: c
  context: {cluster: c, user: u, namespace: default}
current-context: c
`, yq(server), yq(caFile), yq(token))
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func randToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newLeaf returns a serving certificate (DER) signed by ca, and its key (SEC 1 DER).
func newLeaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, dns []string, ips []net.IP) ([]byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return der, kd
}

// newClientLeaf issues a client certificate for user cn in group org, as the API server reads
// them (CN the user name, O the groups).
func newClientLeaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn, org string) ([]byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return der, kd
}

// kubePEM writes a PEM file into dir and returns its path.
func kubePEM(t testing.TB, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	writePEM(t, p, typ, der, 0o600)
	return p
}

// ---- the gateway in front of the cluster ----

// kubeGateway is a gateway with a kubernetes listener and a target "kind-1" for the cluster,
// and a kubeconfig for each user from `airlock kubeconfig`.
type kubeGateway struct {
	*gateway
	c    *kubeCluster
	home map[string]string // user -> HOME holding its `airlock login` and kubeconfig
	seen map[string]bool   // sessions waitKubeSessions returned already
}

// startKubeGateway starts a gateway for c with the given policies (YAML under "policies:").
func startKubeGateway(t testing.TB, c *kubeCluster, policies string, listeners ...string) *kubeGateway {
	t.Helper()
	cfg := gwConfig{
		Listeners: append([]string{"kubernetes"}, listeners...),
		Targets: []targetCfg{{Name: "kind-1", Type: "kubernetes", Address: c.URL,
			Raw: fmt.Sprintf("    ca_file: %s\n    token_file: %s\n    impersonate: true\n", yq(c.CAFile), yq(c.GatewayTokenFile))}},
		Extra: policies,
	}
	g := startGateway(t, cfg)
	return &kubeGateway{gateway: g, c: c, home: map[string]string{}, seen: map[string]bool{}}
}

// kubeconfig logs user in with the airlock CLI and returns the environment under which the
// machine's kubectl uses the kubeconfig `airlock kubeconfig kind-1` printed.
func (kg *kubeGateway) kubeEnv(t testing.TB, user, password string) []string {
	t.Helper()
	if h, ok := kg.home[user]; ok {
		return kg.envFor(h)
	}
	// Under the gateway's directory: the login outlives the subtest that made it.
	home, err := os.MkdirTemp(kg.dir, "home-"+user+"-")
	if err != nil {
		t.Fatal(err)
	}
	env := append(cleanEnv(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config")
	lr := run(time.Minute, env, strings.NewReader(password+"\n"), airlockBin, "login", "--gateway", kg.apiURL(), "--user", user)
	if lr.Code != 0 {
		t.Fatalf("airlock login %s: %s", user, lr)
	}
	// kube-credential is found on PATH, as `airlock` (the kubeconfig names the command).
	bin := filepath.Join(home, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.Symlink(airlockBin, filepath.Join(bin, "airlock")); err != nil {
		t.Fatal(err)
	}
	env = withPath(env, bin)
	// No --server: the CLI asks the gateway for its kubernetes listener and certificate.
	kr := run(time.Minute, env, nil, airlockBin, "kubeconfig", "kind-1", "--namespace", "default")
	if kr.Code != 0 {
		t.Fatalf("airlock kubeconfig: %s", kr)
	}
	if err := os.WriteFile(filepath.Join(home, "kind-1.yaml"), []byte(kr.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	kg.home[user] = home
	return kg.envFor(home)
}

func (kg *kubeGateway) envFor(home string) []string {
	env := append(cleanEnv(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config", "KUBECONFIG="+filepath.Join(home, "kind-1.yaml"))
	return withPath(env, filepath.Join(home, "bin"))
}

func withPath(env []string, dir string) []string {
	out := env[:0:0]
	path := dir
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = dir + ":" + v
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+path)
}

// kubectl runs the machine's kubectl through the gateway as user.
func (kg *kubeGateway) kubectl(t testing.TB, user, password string, stdin *strings.Reader, args ...string) cmdResult {
	t.Helper()
	env := kg.kubeEnv(t, user, password)
	if stdin == nil {
		return run(2*time.Minute, env, nil, kg.c.kubectl, args...)
	}
	return run(2*time.Minute, env, stdin, kg.c.kubectl, args...)
}

// waitKubeSessions returns the ended kubernetes sessions of user started since that it did not
// return before, waiting until there are at least n and all have ended, with their events
// (hash chain checked).
func (kg *kubeGateway) waitKubeSessions(t testing.TB, user string, since time.Time, n int) []kubeSession {
	t.Helper()
	tok := kg.adminToken(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ss []Session
		allEnded := true
		for _, s := range kg.sessions(t, tok, sessionFilter{User: user, Target: "kind-1"}) {
			if s.StartedAt.Before(since.Add(-time.Second)) || s.Type != "kubernetes" || kg.seen[s.ID] {
				continue
			}
			ss = append(ss, s)
			allEnded = allEnded && s.ended()
		}
		if len(ss) >= n && allEnded {
			var out []kubeSession
			for _, s := range ss {
				kg.seen[s.ID] = true
				ev := kg.events(t, tok, s.ID)
				checkChain(t, ev)
				out = append(out, kubeSession{s, ev})
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: want %d ended kubernetes sessions of %s since %s, have %+v", n, user, since, ss)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type kubeSession struct {
	Session
	ev []Event
}

// allEvents joins the events of sessions.
func allEvents(ss []kubeSession) []Event {
	var ev []Event
	for _, s := range ss {
		ev = append(ev, s.ev...)
	}
	return ev
}
