package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/target"
	"gopkg.in/yaml.v3"
)

func kubeEnv(t *testing.T, vars map[string]string, now time.Time) (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }, now: func() time.Time { return now }}, &out, &errb
}

func TestKubeCredential(t *testing.T) {
	home := t.TempDir()
	exp := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	vars := map[string]string{"HOME": home}
	e, _, _ := kubeEnv(t, vars, exp.Add(-time.Hour))
	if _, err := e.saveCredentials(credentials{Gateway: "http://gw", User: "alice", Token: "alt_tok", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}

	e, out, errb := kubeEnv(t, vars, exp.Add(-time.Hour))
	vars["KUBERNETES_EXEC_INFO"] = `{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"}`
	if code := runKubeCredential(e, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var ec execCredential
	if err := json.Unmarshal(out.Bytes(), &ec); err != nil {
		t.Fatal(err)
	}
	if ec.Kind != "ExecCredential" || ec.APIVersion != "client.authentication.k8s.io/v1beta1" || ec.Status.Token != "alice:alt_tok" ||
		ec.Status.ExpirationTimestamp == nil || !ec.Status.ExpirationTimestamp.Equal(exp) {
		t.Errorf("ExecCredential %s", out)
	}

	e, _, errb = kubeEnv(t, vars, exp.Add(time.Minute))
	if code := runKubeCredential(e, nil); code == 0 || !strings.Contains(errb.String(), "expired") {
		t.Errorf("an expired login: exit %d, %s", code, errb)
	}

	vars["AIRLOCK_TOKEN"], vars["AIRLOCK_USER"] = "alt_other", "bob"
	e, out, _ = kubeEnv(t, vars, exp.Add(time.Minute))
	if code := runKubeCredential(e, nil); code != 0 || !strings.Contains(out.String(), `"token":"bob:alt_other"`) || strings.Contains(out.String(), "expirationTimestamp") {
		t.Errorf("AIRLOCK_USER/AIRLOCK_TOKEN: exit %d, %s", code, out)
	}
	e, out, _ = kubeEnv(t, vars, exp.Add(time.Minute))
	if code := runKubeCredential(e, []string{"--target", "kind-1"}); code != 0 || !strings.Contains(out.String(), `"token":"@kind-1/bob:alt_other"`) {
		t.Errorf("--target: exit %d, %s", code, out)
	}
}

func TestKubeconfig(t *testing.T) {
	home := t.TempDir()
	ca := filepath.Join(home, "ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600)
	vars := map[string]string{"HOME": home}
	e, out, errb := kubeEnv(t, vars, time.Now())
	e.saveCredentials(credentials{Gateway: "http://gw", User: "alice", Token: "alt_tok"})
	if code := runKubeconfig(e, []string{"kind-1", "--server", "https://gw.example:16443/", "--ca-file", ca, "--namespace", "dev"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(out.Bytes(), &kc); err != nil {
		t.Fatal(err)
	}
	if len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != "https://gw.example:16443/k8s/kind-1" || kc.Clusters[0].Cluster.CertificateAuthorityData == "" {
		t.Errorf("cluster: %+v", kc.Clusters)
	}
	if len(kc.Users) != 1 || strings.Join(kc.Users[0].User.Exec.Args, " ") != "kube-credential --target kind-1" || kc.Users[0].User.Exec.APIVersion != "client.authentication.k8s.io/v1" {
		t.Errorf("user: %+v", kc.Users)
	}
	if strings.Contains(out.String(), "alt_tok") {
		t.Error("the kubeconfig holds the token; the plugin should fetch it")
	}
	if kc.CurrentContext != "airlock-kind-1" || kc.Contexts[0].Context.Namespace != "dev" {
		t.Errorf("context: %+v", kc.Contexts)
	}
	e, _, _ = kubeEnv(t, vars, time.Now())
	if code := runKubeconfig(e, []string{"kind-1", "--server", "http://gw.example:16443"}); code != exitUsage {
		t.Errorf("--server http://: exit %d, want usage", code)
	}
}

// Without --server the command asks the gateway it is logged in to.
func TestKubeconfigFromGateway(t *testing.T) {
	h := newHarness(t).as(t, "alice")
	h.srv.Targets.Static["kind-1"] = target.Target{Name: "kind-1", Type: "kubernetes", Address: "https://k:6443", Source: "config"}
	pemCert := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	h.srv.TLSCertificate = []byte(pemCert)
	h.srv.Listeners = func() map[string]string {
		return map[string]string{"kubernetes": "0.0.0.0:16443", "postgres": "127.0.0.1:15432"}
	}

	code, out, errs := h.run(t, runKubeconfig, "kind-1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal([]byte(out), &kc); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(h.url, "http://")
	host = host[:strings.LastIndex(host, ":")]
	ca, _ := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CertificateAuthorityData)
	if got := kc.Clusters[0].Cluster.Server; got != "https://"+host+":16443/k8s/kind-1" || string(ca) != pemCert {
		t.Errorf("cluster: server %q, CA %q", got, ca)
	}

	if code, _, errs = h.run(t, runKubeconfig, "pg"); code == exitOK || !strings.Contains(errs, "postgres target, not kubernetes") {
		t.Errorf("a postgres target: exit %d, %q", code, errs)
	}
	if code, _, errs = h.run(t, runKubeconfig, "nope"); code == exitOK || !strings.Contains(errs, "nope") {
		t.Errorf("an unknown target: exit %d, %q", code, errs)
	}
	h.srv.Listeners = func() map[string]string { return map[string]string{"postgres": "127.0.0.1:15432"} }
	if code, _, errs = h.run(t, runKubeconfig, "kind-1"); code == exitOK || !strings.Contains(errs, "no kubernetes listener") {
		t.Errorf("no kubernetes listener: exit %d, %q", code, errs)
	}
}
