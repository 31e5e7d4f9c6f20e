package gateway

import (
	"bytes"
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
