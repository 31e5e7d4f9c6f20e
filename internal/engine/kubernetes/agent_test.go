package kubernetes

import (
	"bufio"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// TestAgentProxy: the agent's side of a kubernetes target. Requests the gateway sends on a
// stream reach the API server over TLS (checked against ca_file) with the agent's token in
// place of any Authorization, impersonation headers kept, and a token_file read for each
// request (rotation); an unreadable token_file gets a Status 502 naming the target.
func TestAgentProxy(t *testing.T) {
	var seen []http.Header
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"PodList","path":"`+r.URL.Path+`"}`)
	}))
	defer api.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("agent-token-1\n"), 0o600)
	tg := target.Target{Name: "kind-x", Type: Name, Address: api.URL, CAFile: ca, TokenFile: tokFile}

	// The gateway's side, as newAgentUpstream builds it, over streams the handshake serves.
	up := newAgentUpstream(tg, func(ctx context.Context, t target.Target, proto string, req []byte) (*connector.Upstream, error) {
		c, _, err := agentHandshake(ctx, t, nil, req)
		if err != nil {
			return nil, err
		}
		return &connector.Upstream{Conn: c}, nil
	})
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", up.base.String()+path, nil)
		req.Header.Set("Authorization", "Bearer user-token-must-not-pass")
		req.Header.Set("Impersonate-User", "alice")
		resp, err := up.rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(bufio.NewReader(resp.Body))
		return resp, string(b)
	}
	for i, tok := range []string{"agent-token-1", "agent-token-2"} {
		os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)
		resp, body := get("/api/v1/namespaces/default/pods")
		if resp.StatusCode != 200 || !strings.Contains(body, `"path":"/api/v1/namespaces/default/pods"`) {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		h := seen[len(seen)-1]
		if got := h.Get("Authorization"); got != "Bearer "+tok {
			t.Errorf("request %d: the API server got Authorization %q, want the agent's %q", i, got, tok)
		}
		if h.Get("Impersonate-User") != "alice" {
			t.Errorf("request %d: Impersonate-User %q, want it passed on", i, h.Get("Impersonate-User"))
		}
	}

	os.Remove(tokFile)
	resp, body := get("/api/v1/pods")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"kind":"Status"`) || !strings.Contains(body, "kind-x") {
		t.Errorf("without a token file: %d %s, want a Status 502 naming the target", resp.StatusCode, body)
	}
	if n := len(seen); n != 2 {
		t.Errorf("the API server saw %d requests, want 2 (none without the agent's credential)", n)
	}
}
