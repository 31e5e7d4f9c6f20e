package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKubeCredentialsMasked changes a Secret through the gateway with every kind of patch
// kubectl sends (JSON patch, merge patch, strategic merge patch, server-side apply), lists and
// watches Secrets whose last-applied annotation holds their data, creates a service account's
// token and reviews it with a TokenReview posted without its kind; no value, nor its base64,
// nor the token may be in the recording, while kubectl and the cluster get them unchanged.
func testKubeCredentialsMasked(t *testing.T, c *kubeCluster, kg *kubeGateway, never []string) {
	since := time.Now()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var values []string
	value := func(name string) string {
		v := name + "-" + randToken(t)[:12]
		values = append(values, v, b64(v))
		return v
	}
	applied, jsonPatched, merged, strategic, ssa, watched := value("applied"), value("jsonpatch"), value("merged"), value("strategic"), value("ssa"), value("watched")
	t.Cleanup(func() {
		c.kubectlDirect(time.Minute, nil, "delete", "--ignore-not-found", "-n", "default", "secret/patched", "secret/ssa-secret", "secret/watched", "serviceaccount/tok-sa")
	})
	sessions := 0
	kc := func(stdin *strings.Reader, args ...string) cmdResult {
		t.Helper()
		sessions++
		r := kg.kubectl(t, "alice", alicePassword, stdin, args...)
		if r.Code != 0 {
			t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	// Applied directly: its last-applied annotation holds the value in clear.
	c.apply(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: patched, namespace: default}\nstringData: {password: %s}\n", applied))

	kc(nil, "patch", "secret", "patched", "--type=json", "-p", `[{"op":"replace","path":"/data/password","value":"`+b64(jsonPatched)+`"}]`)
	if d := c.kubectlDirect(time.Minute, nil, "get", "secret", "patched", "-o", "jsonpath={.data.password}"); d.Stdout != b64(jsonPatched) {
		t.Errorf("the JSON patch did not reach the cluster unchanged: %s", d)
	}
	kc(nil, "patch", "secret", "patched", "--type=merge", "-p", `{"stringData":{"password":"`+merged+`"}}`)
	kc(nil, "patch", "secret", "patched", "-p", `{"data":{"other":"`+b64(strategic)+`"}}`)
	if d := c.kubectlDirect(time.Minute, nil, "get", "secret", "patched", "-o", "jsonpath={.data.password} {.data.other}"); d.Stdout != b64(merged)+" "+b64(strategic) {
		t.Errorf("the merge and strategic patches did not reach the cluster unchanged: %s", d)
	}
	kc(strings.NewReader(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: ssa-secret, namespace: default}\nstringData: {password: %s}\n", ssa)),
		"apply", "--server-side", "-f", "-")
	if g := kc(nil, "get", "secret", "ssa-secret", "-o", "jsonpath={.data.password}"); g.Stdout != b64(ssa) {
		t.Errorf("the client does not get the applied secret unmasked: %s", g)
	}
	// A Table of Secrets: its rows hold each Secret's metadata, annotations included.
	if g := kc(nil, "get", "secrets", "-n", "default"); !strings.Contains(g.Stdout, "patched") {
		t.Errorf("kubectl get secrets: %s", g)
	}
	// A watch of Secrets as a Table.
	cmd := exec.Command(c.kubectl, "get", "secrets", "-n", "default", "-w")
	cmd.Env = kg.kubeEnv(t, "alice", alicePassword)
	out := startLines(t, cmd)
	sessions++
	out.waitFor(t, "patched")
	c.apply(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: watched, namespace: default}\nstringData: {password: %s}\n", watched))
	out.waitFor(t, "watched")
	out.stop(t)

	kc(nil, "create", "serviceaccount", "tok-sa", "-n", "default")
	token := strings.TrimSpace(kc(nil, "create", "token", "tok-sa", "-n", "default").Stdout)
	if strings.Count(token, ".") != 2 {
		t.Fatalf("kubectl create token printed %q, not a JWT", token)
	}
	review := filepath.Join(t.TempDir(), "review.json")
	os.WriteFile(review, []byte(`{"apiVersion":"authentication.k8s.io/v1","spec":{"token":"`+token+`"}}`), 0o600)
	if r := kc(nil, "create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", review); !strings.Contains(r.Stdout, `"authenticated":true`) {
		t.Errorf("the token review: %s", r)
	}

	ev := allEvents(kg.waitKubeSessions(t, "alice", since, sessions))
	checkNever(t, ev, append(append(never, values...), token, token[strings.LastIndex(token, ".")+1:])...)
	body := func(e Event, k string) any {
		b, _ := e.Data["body"].(map[string]any)
		return b[k]
	}
	masked := func(typ string, match func(Event) bool) {
		t.Helper()
		e := findKube(ev, typ, func(e Event) bool { return match(e) && (e.num("masked") > 0 || body(e, "masked") != nil) })
		if e == nil {
			t.Errorf("no %s with masked values: %v", typ, types(ev))
		} else if !strings.Contains(e.Text, `"***"`) {
			t.Errorf("%s %v holds no masked value: %s", typ, e.Data, clip(e.Text, 300))
		}
	}
	for _, ct := range []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"} {
		masked("kube.request", func(e Event) bool { return e.str("verb") == "patch" && e.str("content_type") == ct })
	}
	masked("kube.response", func(e Event) bool { return strings.Contains(e.Text, `"kind":"Table"`) })
	masked("kube.watch", func(e Event) bool { return strings.Contains(e.Text, `"watched"`) })
	masked("kube.response", func(e Event) bool { return strings.Contains(e.Text, `"kind":"TokenRequest"`) })
	masked("kube.request", func(e Event) bool { return e.str("resource") == "tokenreviews" })
}
