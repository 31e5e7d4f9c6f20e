package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/config"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	c := &config.Config{DataDir: t.TempDir()}
	c.Listen.API = "127.0.0.1:0"
	c.Listen.Postgres = "127.0.0.1:0"
	c.Listen.MySQL = "127.0.0.1:0"
	c.Listen.SSH = "127.0.0.1:0"
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEmbeddedDefaultStartsAndStops(t *testing.T) {
	t.Setenv("AIRLOCK_ADMIN_PASSWORD", "")
	var out bytes.Buffer
	g, err := New(testConfig(t), slog.New(slog.DiscardHandler), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "password:") {
		t.Errorf("the generated admin password was not announced: %q", out.String())
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + g.Addr("api") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	if g.Addr("postgres") == "" {
		t.Error("no postgres listener")
	}
	if err := g.Shutdown(nil); err != nil {
		t.Fatal(err)
	}
}

func TestBadPolicyStopsTheGateway(t *testing.T) {
	c := testConfig(t)
	c.Policies = []config.Policy{{Name: "p", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow",
		Masking: []string{"no_such_detector"}}}
	t.Setenv("AIRLOCK_ADMIN_PASSWORD", "x")
	_, err := New(c, slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no_such_detector") {
		t.Fatalf("New = %v, want an error naming the bad masking spec", err)
	}
}

// GET /api/v1/listeners reports the bound listeners and the certificate they present (what
// `airlock kubeconfig TARGET` builds a kubeconfig from).
func TestListenersReportBoundAddresses(t *testing.T) {
	t.Setenv("AIRLOCK_ADMIN_PASSWORD", "admin-pw")
	c := testConfig(t)
	c.Listen.Kubernetes = "127.0.0.1:0"
	g, err := New(c, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(nil)
	api := "http://" + g.Addr("api")
	res, err := http.Post(api+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"admin-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		Token string `json:"token"`
	}
	json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	req, _ := http.NewRequest("GET", api+"/api/v1/listeners", nil)
	req.Header.Set("Authorization", "Bearer "+login.Token)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ans struct {
		Listeners   []struct{ Protocol, Address string } `json:"listeners"`
		Certificate string                               `json:"certificate"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || res.StatusCode != 200 {
		t.Fatalf("listeners: %d %v", res.StatusCode, err)
	}
	got := map[string]string{}
	for _, l := range ans.Listeners {
		got[l.Protocol] = l.Address
	}
	for _, p := range []string{"kubernetes", "postgres", "mysql", "ssh"} {
		if got[p] == "" || got[p] != g.Addr(p) {
			t.Errorf("%s listener reported as %q, bound at %q", p, got[p], g.Addr(p))
		}
	}
	block, _ := pem.Decode([]byte(ans.Certificate))
	if block == nil {
		t.Fatalf("certificate %q", ans.Certificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The kubernetes listener presents exactly this certificate.
	conn, err := tls.Dial("tcp", g.Addr("kubernetes"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if peer := conn.ConnectionState().PeerCertificates; len(peer) == 0 || !peer[0].Equal(cert) {
		t.Error("the kubernetes listener presents another certificate than the API reports")
	}
}
