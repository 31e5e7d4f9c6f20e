package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestKubernetesClientCertificate: the gateway reaches the API server with a client certificate
// (client_cert_file, client_key_file) instead of a token, and impersonates the user with it.
func TestKubernetesClientCertificate(t *testing.T) {
	c := startKubeCluster(t)
	cfg := gwConfig{
		Listeners: []string{"kubernetes"},
		Targets: []targetCfg{{Name: "kind-1", Type: "kubernetes", Address: c.URL,
			Raw: fmt.Sprintf("    ca_file: %s\n    client_cert_file: %s\n    client_key_file: %s\n    impersonate: true\n",
				yq(c.CAFile), yq(c.GatewayCertFile), yq(c.GatewayKeyFile))}},
		Extra: kubePolicies,
	}
	kg := &kubeGateway{gateway: startGateway(t, cfg), c: c, home: map[string]string{}, seen: map[string]bool{}}
	since := time.Now()
	r := kg.kubectl(t, "alice", alicePassword, nil, "get", "pods", "-o", "name")
	if r.Code != 0 || !strings.Contains(r.Stdout, "pod/"+kubePod) {
		t.Fatalf("alice's kubectl get pods with the gateway's client certificate: %s", r)
	}
	// Impersonation with the certificate's identity: the cluster's RBAC refuses bob, by name.
	if r := kg.kubectl(t, "bob", bobPassword, nil, "get", "pods"); r.Code == 0 || !strings.Contains(r.Stderr, `User "bob" cannot list resource "pods"`) {
		t.Fatalf("bob's kubectl get pods: %s", r)
	}
	ss := kg.waitKubeSessions(t, "alice", since, 1)
	found := false
	for _, e := range allEvents(ss) {
		if e.Type == "kube.request" && e.str("verb") == "list" && e.str("resource") == "pods" {
			found = true
		}
	}
	if !found {
		t.Errorf("no kube.request list pods in alice's recording")
	}
}
