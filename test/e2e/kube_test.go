package e2e

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const kubePolicies = `policies:
  - name: kube-users
    subjects: [user:alice, user:bob]
    targets: [kind-1]
    access: allow
    kubernetes:
      - name: no-namespace-deletes
        action: deny
        verbs: [delete]
        resources: [namespaces]
      - name: no-exec-in-kube-system
        action: deny
        verbs: [create]
        resources: [pods/exec, pods/attach, pods/portforward]
        namespaces: [kube-system]
      - name: secrets-are-watched
        action: warn
        verbs: [get, list, watch]
        resources: [secrets]
      - name: configmap-deletes-need-approval
        action: approve
        verbs: [delete]
        resources: [configmaps]
        names: ["cm-*"]
`

// TestKubernetes drives the machine's kubectl through the gateway to a real kube-apiserver
// (with kwok as the kubelet), and checks what kubectl saw and what the gateway recorded.
func TestKubernetes(t *testing.T) {
	requireBinary(t)
	c := startKubeCluster(t)
	kg := startKubeGateway(t, c, kubePolicies)
	gwToken, _ := os.ReadFile(c.GatewayTokenFile)
	// Never in a recording: the gateway's credential for the cluster, a user's gateway token
	// (alt_...) or password, an Authorization or Impersonate header.
	never := []string{strings.TrimSpace(string(gwToken)), "alt_", alicePassword, "Bearer", "Impersonate-", "impersonate-user"}

	t.Run("get and describe", func(t *testing.T) {
		since := time.Now()
		r := kg.kubectl(t, "alice", alicePassword, nil, "get", "pods", "-o", "wide")
		if r.Code != 0 || !regexp.MustCompile(`web\s+1/1\s+Running`).MatchString(r.Stdout) || !strings.Contains(r.Stdout, kubeNode) {
			t.Fatalf("kubectl get pods: %s", r)
		}
		d := kg.kubectl(t, "alice", alicePassword, nil, "describe", "pod", kubePod)
		if d.Code != 0 || !strings.Contains(d.Stdout, "Node:") || !strings.Contains(d.Stdout, "registry.example/web:1") {
			t.Fatalf("kubectl describe pod: %s", d)
		}
		raw := kg.kubectl(t, "alice", alicePassword, nil, "get", "--raw", "/api/v1/namespaces/default/pods/"+kubePod)
		if raw.Code != 0 || !strings.Contains(raw.Stdout, `"kind":"Pod"`) {
			t.Errorf("kubectl get --raw: %s", raw)
		}
		ss := kg.waitKubeSessions(t, "alice", since, 3)
		ev := allEvents(ss)
		checkNever(t, ev, never...)
		var list, resp *Event
		for _, s := range ss {
			if l := findKube(s.ev, "kube.request", func(e Event) bool { return e.str("verb") == "list" && e.str("resource") == "pods" }); l != nil {
				list = l
				resp = findKube(s.ev, "kube.response", func(e Event) bool { return e.num("id") == l.num("id") && e.num("status") == 200 })
			}
		}
		if list == nil || list.str("namespace") != "default" {
			t.Fatalf("no recorded list of pods in default: %v", types(ev))
		}
		if resp == nil || !strings.Contains(resp.Text, kubePod) {
			t.Errorf("the list's response is not recorded with its body: %+v", resp)
		}
		if findKube(ev, "kube.request", func(e Event) bool {
			return e.str("verb") == "get" && e.str("name") == kubePod && e.str("path") == "/api/v1/namespaces/default/pods/"+kubePod
		}) == nil {
			t.Errorf("no recorded get of pod %s (describe, get --raw)", kubePod)
		}
		for _, s := range ss {
			start := ofType(s.ev, "session.start")
			if len(start) != 1 || start[0].str("user") != "alice" || start[0].str("target") != "kind-1" {
				t.Errorf("session %s start: %+v", s.ID, start)
			}
		}
	})

	t.Run("impersonation", func(t *testing.T) {
		// The cluster's RBAC applies to the person: bob has no binding, so the API server
		// itself refuses him, naming him.
		r := kg.kubectl(t, "bob", bobPassword, nil, "get", "pods")
		if r.Code == 0 || !strings.Contains(r.Stderr, `User "bob" cannot list resource "pods"`) {
			t.Fatalf("bob's kubectl get pods: %s", r)
		}
	})

	t.Run("apply and delete, secrets masked", func(t *testing.T) {
		since := time.Now()
		secretValue := "s3cr3t-" + randToken(t)[:12]
		manifest := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: default}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret, namespace: default}
stringData: {password: %s}
`, secretValue)
		r := kg.kubectl(t, "alice", alicePassword, strings.NewReader(manifest), "apply", "-f", "-")
		if r.Code != 0 || !strings.Contains(r.Stdout, "configmap/app-config created") || !strings.Contains(r.Stdout, "secret/app-secret created") {
			t.Fatalf("kubectl apply: %s", r)
		}
		g := kg.kubectl(t, "alice", alicePassword, nil, "get", "secret", "app-secret", "-o", "jsonpath={.data.password}")
		if g.Code != 0 || g.Stdout != base64.StdEncoding.EncodeToString([]byte(secretValue)) {
			t.Errorf("the client does not get the secret unmasked: %s", g)
		}
		if !strings.Contains(g.Stderr, "secrets-are-watched") {
			t.Errorf("no warning of rule secrets-are-watched: %s", g)
		}
		// Direct: the objects are there.
		if d := c.kubectlDirect(time.Minute, nil, "get", "configmap", "app-config", "-o", "jsonpath={.data.color}"); d.Stdout != "blue" {
			t.Errorf("configmap not created: %s", d)
		}
		del := kg.kubectl(t, "alice", alicePassword, nil, "delete", "configmap/app-config", "secret/app-secret")
		if del.Code != 0 || !strings.Contains(del.Stdout, `configmap "app-config" deleted`) {
			t.Fatalf("kubectl delete: %s", del)
		}
		if d := c.kubectlDirect(time.Minute, nil, "get", "configmap", "app-config"); d.Code == 0 {
			t.Errorf("configmap still there after delete: %s", d)
		}
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 3))
		checkNever(t, ev, append(never, secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue)))...)
		if findKube(ev, "kube.request", func(e Event) bool {
			return e.str("verb") == "delete" && e.str("resource") == "configmaps" && e.str("name") == "app-config"
		}) == nil {
			t.Errorf("no recorded delete of the configmap: %v", types(ev))
		}
		masked := 0
		for _, e := range ev {
			if strings.HasPrefix(e.Type, "kube.") && strings.Contains(e.Text, `"***"`) {
				masked++
			}
		}
		if masked == 0 {
			t.Errorf("no recorded body shows a masked secret value")
		}
		if findKube(ev, "kube.request", func(e Event) bool { return e.str("rule") == "secrets-are-watched" && e.str("warning") != "" }) == nil {
			t.Errorf("the warning is not recorded")
		}
	})

	t.Run("secret patches and tokens masked", func(t *testing.T) { testKubeCredentialsMasked(t, c, kg, never) })

	t.Run("watch", func(t *testing.T) {
		since := time.Now()
		cmd := exec.Command(c.kubectl, "get", "configmaps", "-w", "--output-watch-events", "-o", "name")
		cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
		c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched-0, namespace: default}\ndata: {a: b}\n")
		out := startLines(t, cmd)
		out.waitFor(t, "configmap/watched-0") // the list before the watch
		c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched-1, namespace: default}\ndata: {a: b}\n")
		out.waitFor(t, "configmap/watched-1")
		out.stop(t)
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		checkNever(t, ev, never...)
		if findKube(ev, "kube.watch", func(e Event) bool { return e.str("type") == "ADDED" && e.str("name") == "watched-1" }) == nil {
			t.Errorf("the watch event is not recorded: %v", types(ev))
		}
		if findKube(ev, "kube.request", func(e Event) bool { return e.str("verb") == "watch" && e.str("resource") == "configmaps" }) == nil {
			t.Errorf("no recorded watch request")
		}
	})

	t.Run("websocket watch refused", func(t *testing.T) {
		// The API server serves a watch over WebSocket too; the gateway cannot record what
		// such a stream carries, so it refuses the upgrade (kubectl get -w, plain HTTP, works:
		// the "watch" case).
		since := time.Now()
		secretValue := "ws-" + randToken(t)[:12]
		c.apply(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: ws-watched, namespace: default}\nstringData: {password: %s}\n", secretValue))
		encoded := base64.StdEncoding.EncodeToString([]byte(secretValue))
		const path = "/api/v1/namespaces/default/secrets?watch=true&fieldSelector=metadata.name%3Dws-watched"
		// Directly, the API server streams the Secret: what the gateway keeps from the client.
		code, got := websocketUpgrade(t, c.URL, c.CAFile, path, kubeconfigToken(t, c.Kubeconfig), encoded)
		if code != 101 || !strings.Contains(got, encoded) {
			t.Fatalf("directly, the API server answered HTTP %d %q, not a watch over WebSocket with the Secret", code, clip(got, 500))
		}
		gw := fmt.Sprintf("https://127.0.0.1:%d/k8s/kind-1", kg.Port("kubernetes"))
		code, got = websocketUpgrade(t, gw, filepath.Join(kg.DataDir, "tls", "cert.pem"), path, "alice:"+kg.token(t, "alice", alicePassword), encoded)
		var st struct{ Kind, Status, Message string }
		json.Unmarshal([]byte(got), &st)
		if code != 403 || st.Kind != "Status" || st.Status != "Failure" || !strings.Contains(st.Message, "exec, attach and port-forward") {
			t.Errorf("through the gateway: HTTP %d %q, want a Status 403", code, clip(got, 500))
		}
		if strings.Contains(got, encoded) || strings.Contains(got, secretValue) {
			t.Errorf("the client got the Secret: %q", clip(got, 500))
		}
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		checkNever(t, ev, encoded, secretValue)
		req := findKube(ev, "kube.request", func(e Event) bool {
			return e.str("verb") == "watch" && e.str("resource") == "secrets" && e.Data["denied"] == true
		})
		if req == nil {
			t.Fatalf("the refused watch is not recorded: %v", types(ev))
		}
		if findKube(ev, "kube.response", func(e Event) bool {
			return e.num("id") == req.num("id") && e.num("status") == 403 && e.str("source") == "gateway"
		}) == nil {
			t.Errorf("the gateway's 403 is not recorded")
		}
	})

	t.Run("denied", func(t *testing.T) {
		since := time.Now()
		r := kg.kubectl(t, "alice", alicePassword, nil, "delete", "namespace", "kube-public")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no-namespace-deletes") || !strings.Contains(r.Stderr, "Forbidden") && !strings.Contains(r.Stderr, "forbidden") {
			t.Errorf("delete namespace: %s", r)
		}
		if d := c.kubectlDirect(time.Minute, nil, "get", "namespace", "kube-public"); d.Code != 0 {
			t.Errorf("kube-public is gone: %s", d)
		}
		x := kg.kubectl(t, "alice", alicePassword, nil, "exec", "-n", "kube-system", "sys", "--", "true")
		if x.Code == 0 || !strings.Contains(x.Stderr, "no-exec-in-kube-system") {
			t.Errorf("exec in kube-system: %s", x)
		}
		ss := kg.waitKubeSessions(t, "alice", since, 2)
		deny, ev := inSession(ss, "kube.request", func(e Event) bool { return e.Data["denied"] == true && e.str("rule") == "no-namespace-deletes" })
		if deny == nil {
			t.Fatalf("the denial is not recorded: %v", types(allEvents(ss)))
		}
		// kubectl 1.30+ asks for exec with a GET upgraded to WebSocket: the rule on create (as
		// RBAC's) stops it, as the API server would.
		if x, _ := inSession(ss, "kube.request", func(e Event) bool {
			return e.Data["denied"] == true && e.str("rule") == "no-exec-in-kube-system" && e.str("method") == "GET" && e.str("verb") == "create"
		}); x == nil {
			t.Errorf("the exec denial (a GET, verb create) is not recorded: %v", types(allEvents(ss)))
		}
		if findKube(ev, "kube.response", func(e Event) bool {
			return e.num("id") == deny.num("id") && e.num("status") == 403 && e.str("source") == "gateway"
		}) == nil {
			t.Errorf("the gateway's 403 is not recorded")
		}
	})

	t.Run("approval", func(t *testing.T) {
		for _, name := range []string{"cm-approved", "cm-refused"} {
			if d := c.kubectlDirect(time.Minute, nil, "create", "configmap", name, "--from-literal=k=v"); d.Code != 0 {
				t.Fatalf("create %s directly: %s", name, d)
			}
		}
		admin := kg.adminToken(t)
		// pending waits for the gateway's approval request for configmap name and returns its id.
		pending := func(name string) string {
			t.Helper()
			r := kg.waitApprovalRequest(t, admin, name, func(r approvalRequest) bool { return strings.Contains(r.Statement, name) })
			if r.User != "alice" || r.Target != "kind-1" || r.Rule != "configmap-deletes-need-approval" {
				t.Errorf("approval request %+v", r)
			}
			return r.ID
		}
		since := time.Now()
		for _, tc := range []struct {
			name, decision string
			ok             bool
		}{{"cm-approved", "approve", true}, {"cm-refused", "deny", false}} {
			done := make(chan cmdResult, 1)
			go func() { done <- kg.kubectl(t, "alice", alicePassword, nil, "delete", "configmap", tc.name) }()
			id := pending(tc.name)
			select {
			case r := <-done:
				t.Fatalf("kubectl delete %s did not wait for the approval: %s", tc.name, r)
			default:
			}
			if code, body := kg.api(t, admin, "POST", "/api/v1/requests/"+id+"/"+tc.decision, map[string]string{"reason": tc.decision + " in the test"}); code != 200 {
				t.Fatalf("%s %s: %d %s", tc.decision, id, code, body)
			}
			r := <-done
			gone := c.kubectlDirect(time.Minute, nil, "get", "configmap", tc.name).Code != 0
			if tc.ok && (r.Code != 0 || !gone) {
				t.Errorf("approved delete: %s (still there: %v)", r, !gone)
			}
			if !tc.ok && (r.Code == 0 || gone || !strings.Contains(r.Stderr, "not approved") || !strings.Contains(r.Stderr, "deny in the test")) {
				t.Errorf("refused delete: %s (gone: %v)", r, gone)
			}
		}
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 2))
		var decisions []string
		for _, e := range ofType(ev, "guardrail") {
			if e.str("rule") == "configmap-deletes-need-approval" && e.Data["approved"] != nil {
				decisions = append(decisions, fmt.Sprintf("%v by %s", e.Data["approved"], e.str("by")))
			}
		}
		slices.Sort(decisions) // sessions come newest first
		if strings.Join(decisions, ", ") != "false by admin, true by admin" {
			t.Errorf("recorded decisions %q, want the approval and the refusal by admin", decisions)
		}
	})

	// kwok's exec does not pass on the end of stdin (`cat` would never end, directly too), so
	// the commands read one line; and it reports a non-zero exit as an InternalError Status
	// (kubectl exits 1, directly too), so the exit status is in exec.exit's message.
	execCmd := `read line; echo "got $line"; echo to-stderr >&2; echo POD_ENV=$POD_ENV; exit 3`
	direct := c.kubectlDirect(2*time.Minute, strings.NewReader("hello directly\n"), "exec", "-i", kubePod, "--", "sh", "-c", execCmd)
	if !strings.Contains(direct.Stdout, "got hello directly") {
		t.Fatalf("kubectl exec -i directly: %s", direct)
	}
	checkExec := func(t *testing.T, env []string, input string) {
		since := time.Now()
		r := run(2*time.Minute, env, strings.NewReader(input+"\n"), c.kubectl, "exec", "-i", kubePod, "--", "sh", "-c", execCmd)
		if r.Code != direct.Code || !strings.Contains(r.Stdout, "got "+input) || !strings.Contains(r.Stdout, "POD_ENV=kwok") || !strings.Contains(r.Stderr, "to-stderr") {
			t.Fatalf("kubectl exec -i: %s\n(directly: exit %d)", r, direct.Code)
		}
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		checkNever(t, ev, never...)
		ex := findKube(ev, "exec", func(e Event) bool { return strings.Contains(e.str("command"), "read line;") })
		if ex == nil || ex.Data["pty"] == true || ex.str("kind") != "exec" {
			t.Fatalf("no exec event: %v", types(ev))
		}
		if in := terminalText(ev, "terminal.input", ""); in != input+"\n" {
			t.Errorf("recorded stdin %q", in)
		}
		if out := terminalText(ev, "terminal.output", ""); !strings.Contains(out, "got "+input) || !strings.Contains(out, "POD_ENV=kwok") {
			t.Errorf("recorded stdout %q", out)
		}
		if errOut := terminalText(ev, "terminal.output", "stderr"); !strings.Contains(errOut, "to-stderr") {
			t.Errorf("recorded stderr %q", errOut)
		}
		exit := ofType(ev, "exec.exit")
		if len(exit) != 1 || !strings.Contains(exit[0].str("message"), "exit status 3") {
			t.Errorf("exec.exit: %+v", exit)
		}
	}
	t.Run("exec with stdin", func(t *testing.T) {
		checkExec(t, kg.kubeEnv(t, "alice", alicePassword), "hello over websocket")
	})
	t.Run("exec over SPDY", func(t *testing.T) {
		// kubectl before 1.30 (or with the WebSocket feature gate off) speaks SPDY.
		checkExec(t, append(kg.kubeEnv(t, "alice", alicePassword), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"), "hello over spdy")
	})

	// Bulk output: the gateway relays what the API server has already sent in one read, one
	// commit and one write (bulkio.go); every byte arrives, in order, and is recorded.
	t.Run("exec bulk output", func(t *testing.T) {
		since := time.Now()
		from := kg.logSize()
		r := run(2*time.Minute, kg.kubeEnv(t, "alice", alicePassword), nil, c.kubectl, "exec", kubePod, "--", "seq", "1", "1000000")
		if want := seqText(1000000); r.Code != 0 || r.Stdout != want {
			t.Fatalf("kubectl exec seq: exit %d, %d bytes of stdout, want %d (stderr %s)", r.Code, len(r.Stdout), len(want), clip(r.Stderr, 500))
		}
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
			t.Errorf("recorded stdout: %d bytes, kubectl got %d", len(out), len(r.Stdout))
		}
		log, _ := os.ReadFile(kg.logPath)
		drained := false
		for _, line := range strings.Split(string(log[from:]), "\n") {
			var l struct {
				Msg     string `json:"msg"`
				Drained int    `json:"drained_reads"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "upgraded stream: target side ended" && l.Drained > 0 {
				drained = true
			}
		}
		if !drained {
			t.Errorf("no read of the stream took more than one read's bytes: this test does not test the bulk path")
		}
	})

	t.Run("exec -it with a resize", func(t *testing.T) {
		testKubeInteractive(t, kg)
	})

	t.Run("logs -f", func(t *testing.T) {
		since := time.Now()
		cmd := exec.Command(c.kubectl, "logs", "-f", kubePod)
		cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
		out := startLines(t, cmd)
		if first := out.waitFor(t, "web: started"); first != "web: started" {
			t.Fatalf("kubectl logs -f printed %q", first)
		}
		line := "web: followed " + randToken(t)[:8]
		c.AppendLog(line)
		out.waitFor(t, line)
		out.stop(t)
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		checkNever(t, ev, never...)
		if text := terminalText(ev, "terminal.output", ""); !strings.Contains(text, "web: started") || !strings.Contains(text, line) {
			t.Errorf("the followed log is not recorded: %q", text)
		}
	})

	t.Run("attach", func(t *testing.T) {
		// kwok attaches to a container by streaming the pod's log file (ClusterAttach) as the
		// process's output: kubectl attach gets it over WebSocket, as an exec's stdout.
		since := time.Now()
		cmd := exec.Command(c.kubectl, "attach", kubePod)
		cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
		out := startLines(t, cmd)
		// kwok follows the file from its end once attached: append lines until one arrives.
		line := ""
		deadline := time.Now().Add(time.Minute)
	wait:
		for i := 0; ; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("kubectl attach printed none of the lines appended; it printed:\n%s", strings.Join(out.all, "\n"))
			}
			c.AppendLog(fmt.Sprintf("web: attached %d", i))
			timeout := time.After(time.Second)
			for {
				select {
				case s, ok := <-out.ch:
					if !ok {
						t.Fatalf("kubectl attach ended; it printed:\n%s", strings.Join(append(out.all, s), "\n"))
					}
					out.all = append(out.all, s)
					if strings.Contains(s, "web: attached") {
						line = s
						break wait
					}
				case <-timeout:
					continue wait
				}
			}
		}
		out.stop(t)
		ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
		checkNever(t, ev, never...)
		if x := findKube(ev, "exec", func(e Event) bool { return e.str("kind") == "attach" }); x == nil {
			t.Errorf("no exec event of kind attach: %v", types(ev))
		}
		if text := terminalText(ev, "terminal.output", ""); !strings.Contains(text, line) {
			t.Errorf("the attached output (%q) is not recorded: %q", line, text)
		}
	})

	t.Run("masked output", func(t *testing.T) { testKubeMasked(t, c) })

	// kubectl 1.32 forwards ports over WebSocket (SPDY tunnelled in it,
	// SPDY/3.1+portforward.k8s.io); KUBECTL_PORT_FORWARD_WEBSOCKETS=false makes it speak SPDY.
	for _, tc := range []struct{ name, env string }{
		{"port-forward", ""},
		{"port-forward over SPDY", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"},
	} {
		t.Run(tc.name, func(t *testing.T) { testKubePortForward(t, kg, tc.env, never) })
	}
}

// testKubeMasked runs exec and logs -f through a gateway whose policy masks credit cards and
// emails: what the pod prints reaches kubectl masked, the recording has the same masked bytes,
// and the values are nowhere in it. The commands print the values from pieces, so that the
// recorded command line (kept as typed, as SSH's) does not hold them either.
func testKubeMasked(t *testing.T, c *kubeCluster) {
	kg := startKubeGateway(t, c, `policies:
  - name: kube-masked
    subjects: [user:alice]
    targets: [kind-1]
    access: allow
    masking: [credit_card, email]
`)
	raw := []string{"4111111111111111", "alice@example.com", "5555-5555-5555-4444", "bob@example.org"}
	since := time.Now()
	r := kg.kubectl(t, "alice", alicePassword, nil, "exec", kubePod, "--", "sh", "-c",
		`printf 'card %s%s mail %s@%s\n' 41111111 11111111 alice example.com; printf 'err %s-%s\n' 5555-5555 5555-4444 >&2`)
	if r.Code != 0 || r.Stdout != "card ************1111 mail a****@****.com\n" || !strings.Contains(r.Stderr, "err ****-****-****-4444\n") {
		t.Fatalf("kubectl exec through the masking policy: %s", r)
	}
	ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
	checkNever(t, ev, raw...)
	if out := terminalText(ev, "terminal.output", ""); out != r.Stdout {
		t.Errorf("recorded stdout %q, the client got %q", out, r.Stdout)
	}
	if errOut := terminalText(ev, "terminal.output", "stderr"); !strings.Contains(errOut, "err ****-****-****-4444") {
		t.Errorf("recorded stderr %q", errOut)
	}
	hits := map[string]int64{}
	for _, e := range ofType(ev, "terminal.output") {
		if m, ok := e.Data["masked"].(map[string]any); ok {
			for k := range m {
				hits[k] += Event{Data: m}.num(k)
			}
		}
	}
	if hits["credit_card"] != 2 || hits["email"] != 1 {
		t.Errorf("terminal.output events count masked values %v, want 2 credit_card and 1 email", hits)
	}

	// logs -f: a line appended while it follows.
	since = time.Now()
	cmd := exec.Command(c.kubectl, "logs", "-f", kubePod)
	cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
	out := startLines(t, cmd)
	out.waitFor(t, "web: started")
	c.AppendLog("web: paid with 4111 1111 1111 1111, receipt to bob@example.org")
	if line := out.waitFor(t, "web: paid"); line != "web: paid with **** **** **** 1111, receipt to b****@****.org" {
		t.Errorf("kubectl logs -f printed %q", line)
	}
	out.stop(t)
	ev = allEvents(kg.waitKubeSessions(t, "alice", since, 1))
	checkNever(t, ev, append(raw, "4111 1111 1111 1111")...)
	if text := terminalText(ev, "terminal.output", ""); !strings.Contains(text, "web: paid with **** **** **** 1111, receipt to b****@****.org") {
		t.Errorf("the followed log is not recorded masked: %q", text)
	}
}

// testKubePortForward runs `kubectl port-forward` through the gateway, sends a line through the
// forward (kwok forwards to the cluster's echo server), and checks that the recording has the
// forwarded connection, the bytes each way, and their lengths and hashes.
func testKubePortForward(t *testing.T, kg *kubeGateway, env string, never []string) {
	since := time.Now()
	cmd := exec.Command(kg.c.kubectl, "port-forward", "pod/"+kubePod, ":8080")
	cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	out := startLines(t, cmd)
	fwd := out.waitFor(t, "Forwarding from 127.0.0.1:")
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+) ->`).FindStringSubmatch(fwd)
	if m == nil {
		t.Fatalf("no local port in %q", fwd)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	const ping = "ping through the gateway\n"
	fmt.Fprint(conn, ping)
	got, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || got != "echo: "+ping {
		t.Errorf("through the forward: %q %v", got, err)
	}
	out.waitFor(t, "Handling connection for")
	out.stop(t)
	ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
	checkNever(t, ev, never...)
	req := findKube(ev, "kube.request", func(e Event) bool { return e.str("subresource") == "portforward" })
	if req == nil {
		t.Fatalf("no port-forward request recorded: %v", types(ev))
	}
	end := findKube(ev, "kube.response.end", func(e Event) bool { return e.num("id") == req.num("id") })
	if end == nil {
		t.Errorf("the forward's end is not recorded")
	} else if e := end.str("error"); e != "" {
		t.Errorf("kube.response.end reports %q", e)
	}
	open := findKube(ev, "forward", func(e Event) bool { return e.Data["closed"] != true })
	if open == nil || open.str("kind") != "portforward" || open.str("destination") != "default/"+kubePod+":8080" || open.num("request") != req.num("id") {
		t.Fatalf("no forward event for the connection: %+v", open)
	}
	ch := open.num("channel")
	var from, to string
	for _, e := range ofType(ev, "forward.data") {
		if e.num("channel") != ch {
			continue
		}
		if e.Seq < open.Seq {
			t.Errorf("forward.data before its forward event")
		}
		switch e.str("from") {
		case "client":
			from += e.Text
		case "target":
			to += e.Text
		}
	}
	if from != ping || to != "echo: "+ping {
		t.Errorf("recorded through the forward %q, and back %q", from, to)
	}
	closed := findKube(ev, "forward", func(e Event) bool { return e.Data["closed"] == true && e.num("channel") == ch })
	if closed == nil {
		t.Fatalf("the forwarded connection's end is not recorded")
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	if closed.num("bytes_from_client") != int64(len(ping)) || closed.num("bytes_to_client") != int64(len("echo: "+ping)) ||
		closed.str("sha256_from_client") != sum(ping) || closed.str("sha256_to_client") != sum("echo: "+ping) {
		t.Errorf("closing forward event %+v", closed.Data)
	}
}

// testKubeInteractive runs `kubectl exec -it web -- sh` through the gateway in tmux, types,
// resizes the window, and checks the recording, the asciicast export and the replay.
func testKubeInteractive(t *testing.T, kg *kubeGateway) {
	dir := t.TempDir()
	env := kg.kubeEnv(t, "alice", alicePassword)
	tm := newTmux(t, dir, env)
	since := time.Now()
	kubeCmd := fmt.Sprintf("%s exec -it %s -- sh", kg.c.kubectl, kubePod)
	tm.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", kubeCmd+"; echo KUBECTL-EXITED-$?; sleep 60")
	tm.send("export PS1='PROMPT> '", "Enter")
	tm.waitFor("PROMPT> ")
	tm.send("echo answer=$((6*7))", "Enter")
	tm.waitFor("answer=42")
	tm.send("stty size", "Enter")
	tm.waitFor("30 100")
	tm.run("resize-window", "-t", "main", "-x", "120", "-y", "40")
	// kubectl sends the new size when it sees SIGWINCH, which may be after the next command
	// runs: ask until the shell sees it.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(tm.screen(), "40 120") {
		if time.Now().After(deadline) {
			t.Fatalf("the shell never saw the new size:\n%s", tm.screen())
		}
		tm.send("clear; stty size", "Enter")
		time.Sleep(200 * time.Millisecond)
	}
	tm.send("exit 0", "Enter")
	tm.waitFor("KUBECTL-EXITED-0")

	ss := kg.waitKubeSessions(t, "alice", since, 1)
	var s kubeSession
	for _, x := range ss {
		if findKube(x.ev, "exec", func(e Event) bool { return e.Data["pty"] == true }) != nil {
			s = x
		}
	}
	if s.ID == "" {
		t.Fatalf("no session with an exec among %d", len(ss))
	}
	ev := s.ev
	ex := ofType(ev, "exec")
	if len(ex) != 1 || ex[0].Data["pty"] != true || ex[0].str("command") != "sh" {
		t.Errorf("exec event %+v", ex)
	}
	var sizes []string
	for _, e := range ofType(ev, "terminal.resize") {
		sizes = append(sizes, fmt.Sprintf("%dx%d", e.num("cols"), e.num("rows")))
	}
	if len(sizes) == 0 || sizes[0] != "100x30" || sizes[len(sizes)-1] != "120x40" {
		t.Errorf("recorded sizes %v, want 100x30 first and 120x40 last", sizes)
	}
	if in := terminalText(ev, "terminal.input", ""); !strings.Contains(in, "echo answer=$((6*7))") {
		t.Errorf("recorded input %q", in)
	}
	if out := terminalText(ev, "terminal.output", ""); !strings.Contains(out, "answer=42") || !strings.Contains(out, "40 120") {
		t.Errorf("recorded output %q", clip(out, 2000))
	}

	// asciicast v2: header at the first size, "o" output, an "r" for the resize.
	home := t.TempDir()
	cenv := append(cleanEnv(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config")
	if lr := run(time.Minute, cenv, strings.NewReader(audPassword+"\n"), airlockBin, "login", "--gateway", kg.apiURL(), "--user", "audrey"); lr.Code != 0 {
		t.Fatalf("airlock login audrey: %s", lr)
	}
	castPath := filepath.Join(dir, "exec.cast")
	if r := run(time.Minute, cenv, nil, airlockBin, "export", s.ID, "--format", "asciicast", "-o", castPath); r.Code != 0 {
		t.Fatalf("export --format asciicast: %s", r)
	}
	f, err := os.Open(castPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatal("empty asciicast")
	}
	var hdr struct{ Version, Width, Height int }
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 || hdr.Width != 100 || hdr.Height != 30 {
		t.Fatalf("asciicast header %s (%v): want version 2, 100x30", sc.Text(), err)
	}
	var output strings.Builder
	var resizes []string
	for sc.Scan() {
		var e []any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || len(e) != 3 {
			t.Fatalf("asciicast event line %q: %v", sc.Text(), err)
		}
		switch e[1] {
		case "o":
			output.WriteString(e[2].(string))
		case "r":
			resizes = append(resizes, e[2].(string))
		}
	}
	if !strings.Contains(output.String(), "answer=42") {
		t.Errorf("asciicast output lacks the session's output")
	}
	if len(resizes) == 0 || resizes[len(resizes)-1] != "120x40" {
		t.Errorf("asciicast resizes %v, want ending 120x40", resizes)
	}
	rp := run(time.Minute, cenv, nil, airlockBin, "replay", s.ID, "--speed", "0")
	if rp.Code != 0 || !strings.Contains(rp.Stdout, "answer=42") {
		t.Errorf("replay --speed 0: %s", rp)
	}
}

// ---- helpers ----

// lines collects the output lines of a running command.
type lines struct {
	ch   chan string
	all  []string
	cmd  *exec.Cmd
	done chan struct{} // closed when the command has ended
}

// stop interrupts the command (as ^C would) and waits for it to end.
func (l *lines) stop(t *testing.T) {
	l.cmd.Process.Signal(os.Interrupt)
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		l.cmd.Process.Kill()
		<-l.done
		t.Errorf("%s did not end on SIGINT", l.cmd.Path)
	}
}

// startLines starts cmd with its stdout and stderr read line by line; the test's cleanup kills
// it if it still runs.
func startLines(t *testing.T, cmd *exec.Cmd) *lines {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lines{ch: make(chan string, 1000), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); pw.Close(); close(l.done) }()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			cmd.Process.Kill()
			<-l.done
		}
	})
	return l
}

// waitFor returns the first line containing want.
func (l *lines) waitFor(t *testing.T, want string) string {
	t.Helper()
	for _, s := range l.all {
		if strings.Contains(s, want) {
			return s
		}
	}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case s, ok := <-l.ch:
			if !ok {
				t.Fatalf("the command ended without printing %q; it printed:\n%s", want, strings.Join(l.all, "\n"))
			}
			l.all = append(l.all, s)
			if strings.Contains(s, want) {
				return s
			}
		case <-timeout:
			t.Fatalf("after 60s no line with %q; the command printed:\n%s", want, strings.Join(l.all, "\n"))
		}
	}
}

// inSession finds an event in one of ss and returns it with the events of its session.
func inSession(ss []kubeSession, typ string, match func(Event) bool) (*Event, []Event) {
	for _, s := range ss {
		if e := findKube(s.ev, typ, match); e != nil {
			return e, s.ev
		}
	}
	return nil, nil
}

func findKube(ev []Event, typ string, match func(Event) bool) *Event {
	for i := range ev {
		if ev[i].Type == typ && match(ev[i]) {
			return &ev[i]
		}
	}
	return nil
}

func types(ev []Event) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Type)
	}
	return out
}

// checkNever fails when any event's data or bytes contain one of needles.
func checkNever(t testing.TB, ev []Event, needles ...string) {
	t.Helper()
	for _, e := range ev {
		b, _ := json.Marshal(e.Data)
		raw, _ := base64.StdEncoding.DecodeString(e.Base64)
		all := string(b) + e.Text + string(raw)
		for _, n := range needles {
			if n != "" && strings.Contains(all, n) {
				t.Errorf("event %d (%s) holds %q: %s", e.Seq, e.Type, n, clip(all, 500))
			}
		}
	}
}

// websocketUpgrade asks base (an API server, or the gateway's /k8s/TARGET) for path upgraded to
// WebSocket, as a browser would (with an Origin, which the API server's WebSocket watch wants), and returns the status and what came: the body of a refusal,
// or the stream's first bytes, up to until (or what came in 5 s).
func websocketUpgrade(t *testing.T, base, caFile, path, token, until string) (int, string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET %s%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Origin: https://%[3]s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", u.Path, path, u.Host, token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade of %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64<<10)
	n := 0
	for n < len(b) && !strings.Contains(string(b[:n]), until) {
		m, err := br.Read(b[n:])
		n += m
		if err != nil {
			break
		}
	}
	return resp.StatusCode, string(b[:n])
}
