package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKubernetesAgent: a kubernetes target served by an agent. The agent's config holds the
// cluster's address, CA and token; the gateway's has none of them, only the target's name and
// its agent. kubectl, unmodified, lists pods and runs exec (WebSocket and SPDY) through the
// gateway and the agent, as the gateway's user (impersonation), and every request is recorded
// at the gateway as for a cluster it reaches itself.
func TestKubernetesAgent(t *testing.T) {
	requireBinary(t)
	c := startKubeCluster(t)
	g := startGateway(t, gwConfig{
		Listeners:   []string{"kubernetes"},
		AgentListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Targets:     []targetCfg{{Name: "kind-1", Type: "kubernetes", Agent: "k8s-agent", Raw: "    impersonate: true\n"}},
	})
	kg := &kubeGateway{gateway: g, c: c, home: map[string]string{}, seen: map[string]bool{}}
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	// kind-1 is named in the gateway's config (agent: k8s-agent, impersonate there); kind-2 only
	// in the agent's, which announces it with its impersonate setting.
	y := fmt.Sprintf("shutdown_grace: 2m\ntargets:\n  - name: kind-1\n    type: kubernetes\n    address: %s\n    ca_file: %s\n    token_file: %s\n"+
		"  - name: kind-2\n    type: kubernetes\n    address: %s\n    ca_file: %s\n    token_file: %s\n    impersonate: true\n",
		yq(c.URL), yq(c.CAFile), yq(c.GatewayTokenFile), yq(c.URL), yq(c.CAFile), yq(c.GatewayTokenFile))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	agentTok := g.createAgent(t, "k8s-agent")
	a := startAgent(t, "", "k8s-agent", agentTok, cfg)
	g.waitAgent(t, "k8s-agent", "connected", func(v agentView) bool { return v.Connected })
	tok, _ := os.ReadFile(c.GatewayTokenFile)
	clusterToken := strings.TrimSpace(string(tok))
	never := []string{clusterToken, "alt_", alicePassword, "Bearer", "Impersonate-"}

	t.Run("get pods and whoami", func(t *testing.T) {
		since := time.Now()
		r := kg.kubectl(t, "alice", alicePassword, nil, "get", "pods", "-o", "wide")
		if r.Code != 0 || !regexp.MustCompile(`web\s+1/1\s+Running`).MatchString(r.Stdout) {
			t.Fatalf("kubectl get pods through the agent: %s", r)
		}
		// The API server saw alice: the impersonation headers the gateway sets went through
		// the agent, with the agent's credential.
		w := kg.kubectl(t, "alice", alicePassword, nil, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if w.Code != 0 || strings.TrimSpace(w.Stdout) != "alice" {
			t.Errorf("kubectl auth whoami through the agent: %s (want alice)", w)
		}
		ss := kg.waitKubeSessions(t, "alice", since, 2)
		ev := allEvents(ss)
		checkNever(t, ev, never...)
		st := ofType(ev, "session.start")
		if len(st) == 0 || st[0].str("agent") != "k8s-agent" {
			t.Errorf("session.start does not name the agent: %+v", st)
		}
		list := findKube(ev, "kube.request", func(e Event) bool { return e.str("verb") == "list" && e.str("resource") == "pods" })
		if list == nil {
			t.Fatalf("no recorded list of pods: %v", types(ev))
		}
		resp := findKube(ev, "kube.response", func(e Event) bool { return e.num("id") == list.num("id") && e.num("status") == 200 })
		if resp == nil || !strings.Contains(resp.Text, kubePod) {
			t.Errorf("the list's response is not recorded with its body: %+v", resp)
		}
	})

	// kwok's exec does not pass on the end of stdin, so the command reads one line.
	execCmd := `read line; echo "got $line"; echo to-stderr >&2`
	for _, tc := range []struct{ name, env, input string }{
		{"exec over websocket", "", "hello via the agent"},
		{"exec over SPDY", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "hello via the agent over spdy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := time.Now()
			env := kg.kubeEnv(t, "alice", alicePassword)
			if tc.env != "" {
				env = append(env, tc.env)
			}
			r := run(2*time.Minute, env, strings.NewReader(tc.input+"\n"), c.kubectl, "exec", "-i", kubePod, "--", "sh", "-c", execCmd)
			if r.Code != 0 || !strings.Contains(r.Stdout, "got "+tc.input) || !strings.Contains(r.Stderr, "to-stderr") {
				t.Fatalf("kubectl exec -i through the agent: %s", r)
			}
			ev := allEvents(kg.waitKubeSessions(t, "alice", since, 1))
			checkNever(t, ev, never...)
			if findKube(ev, "exec", func(e Event) bool { return strings.Contains(e.str("command"), "read line;") }) == nil {
				t.Fatalf("no exec event: %v", types(ev))
			}
			if in := terminalText(ev, "terminal.input", ""); in != tc.input+"\n" {
				t.Errorf("recorded stdin %q", in)
			}
			if out := terminalText(ev, "terminal.output", ""); !strings.Contains(out, "got "+tc.input) {
				t.Errorf("recorded stdout %q", out)
			}
		})
	}

	t.Run("a target only the agent's config names", func(t *testing.T) {
		env := kg.kubeEnv(t, "alice", alicePassword) // logged in; now a kubeconfig for kind-2
		home := kg.home["alice"]
		kr := run(time.Minute, env, nil, airlockBin, "kubeconfig", "kind-2",
			"--server", fmt.Sprintf("https://127.0.0.1:%d", kg.Port("kubernetes")),
			"--ca-file", filepath.Join(kg.DataDir, "tls", "cert.pem"), "--namespace", "default")
		if kr.Code != 0 {
			t.Fatalf("airlock kubeconfig kind-2: %s", kr)
		}
		kc := filepath.Join(home, "kind-2.yaml")
		if err := os.WriteFile(kc, []byte(kr.Stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, "KUBECONFIG="+kc)
		w := run(2*time.Minute, env, nil, c.kubectl, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if w.Code != 0 || strings.TrimSpace(w.Stdout) != "alice" {
			t.Errorf("kubectl auth whoami on the announced target: %s (want alice: impersonate from the agent's config)", w)
		}
	})

	t.Run("the gateway holds no credential for the cluster", func(t *testing.T) {
		if hits := filesContaining(t, g.dir, clusterToken); len(hits) > 0 {
			t.Errorf("the cluster's token is in the gateway's files: %v", hits)
		}
		if hits := filesContaining(t, g.dir, c.URL); len(hits) > 0 {
			t.Errorf("the cluster's address is in the gateway's files: %v", hits)
		}
	})

	// The agent killed under a running exec or followed log: kubectl prints the gateway's
	// message naming the agent (an exec's Status on its error channel or stream; the log's last
	// line, then the stream fails), the stream's kube.response.end says agent_lost, and so does
	// the session's end; the chain verifies.
	top := t
	for _, tc := range []struct{ name, env, marker string }{
		{"exec over websocket", "", uniq("kube_lost")},
		{"exec over spdy", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", uniq("kube_lost")},
		{"logs -f", "", "web: started"},
	} {
		t.Run("agent killed mid-"+tc.name, func(t *testing.T) {
			since := time.Now()
			env := kg.kubeEnv(t, "alice", alicePassword)
			if tc.env != "" {
				env = append(env, tc.env)
			}
			args := []string{"exec", kubePod, "--", "sh", "-c", "echo " + tc.marker + "; sleep 120"}
			if tc.name == "logs -f" {
				args = []string{"logs", "-f", kubePod}
			}
			wait := startBackground(t, env, c.kubectl, args...)
			id := g.waitRunningOutput(t, "alice", "kind-1", since, tc.marker)
			a.kill()
			r := wait()
			if r.Code == 0 || !strings.Contains(r.Stdout, tc.marker) ||
				!strings.Contains(r.Stdout+r.Stderr, "airlock: the connection to target kind-1 was lost with the agent serving it: the tunnel to agent k8s-agent was lost (disconnected)") {
				t.Errorf("kubectl %s when its agent was killed: %s (want the output, then a failure with the gateway's message naming the agent)", tc.name, r)
			}
			var lost *kubeSession
			for _, ks := range kg.waitKubeSessions(t, "alice", since, 1) {
				if ks.ID == id {
					lost = &ks
				}
			}
			if lost == nil {
				t.Fatalf("session %s not among those that ended", id)
			}
			if lost.EndReason != "agent_lost" || endReason(lost.ev) != "agent_lost" || !strings.Contains(endEvent(lost.ev).str("error"), "agent k8s-agent was lost") {
				t.Errorf("session %s ended %q / %q (%v), want agent_lost naming the agent", id, lost.EndReason, endReason(lost.ev), endEvent(lost.ev).Data)
			}
			if findKube(lost.ev, "kube.response.end", func(e Event) bool {
				return strings.HasPrefix(e.str("error"), "agent_lost: the tunnel to agent k8s-agent was lost")
			}) == nil {
				t.Errorf("no kube.response.end saying agent_lost: %v", ofType(lost.ev, "kube.response.end"))
			}
			g.verifyCLI(t, id)
			a = startAgent(top, "", "k8s-agent", agentTok, cfg)
			g.waitAgent(t, "k8s-agent", "connected again", func(v agentView) bool { return v.Connected })
		})
	}

	t.Run("agent gone", func(t *testing.T) {
		// SIGTERM drains: the gateway's idle connections (streams the agent counts as
		// sessions) end on their own, so the agent exits without waiting out its grace.
		a.signal(syscall.SIGTERM)
		if code := a.wait(time.Minute); code != 0 {
			t.Fatalf("agent after SIGTERM: exit %d; log:\n%s", code, a.log())
		}
		if strings.Contains(a.log(), "grace period over") {
			t.Errorf("the drain waited out its grace (idle connections held it):\n%s", a.log())
		}
		g.waitAgent(t, "k8s-agent", "disconnected", func(v agentView) bool { return !v.Connected })
		// kubectl prints the Status message of a failed request, not of a failed discovery:
		// ask for the pods directly.
		r := kg.kubectl(t, "alice", alicePassword, nil, "get", "--raw", "/api/v1/namespaces/default/pods")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no connected agent serves the target") || !strings.Contains(r.Stderr, "k8s-agent") {
			t.Errorf("kubectl get --raw pods with the agent gone: %s (want the gateway's Status naming the agent)", r)
		}
	})
}
