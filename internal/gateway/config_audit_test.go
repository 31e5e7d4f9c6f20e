package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

func TestConfigChangeIsAudited(t *testing.T) {
	t.Setenv("AIRLOCK_ADMIN_PASSWORD", "x")
	c := testConfig(t)
	run := func() {
		t.Helper()
		g, err := New(c, slog.New(slog.DiscardHandler), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		if err := g.Shutdown(nil); err != nil {
			t.Fatal(err)
		}
	}
	run()
	first := configDigest(c)
	run() // the same configuration: no config.change
	c.Retention.Interval *= 2
	second := configDigest(c)
	if first == second {
		t.Fatal("the digest does not change with the configuration")
	}
	run()

	st, err := openStore(c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	list, err := st.Sessions(ctx, store.Filter{Type: "audit", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var starts, changes []map[string]string
	for i := len(list) - 1; i >= 0; i-- { // newest first -> oldest first
		err := st.Events(ctx, list[i].ID, 0, func(e *event.Event) error {
			if e.Type != event.Audit {
				return nil
			}
			var d struct {
				Action string            `json:"action"`
				Detail map[string]string `json:"detail"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			switch d.Action {
			case audit.ActionGatewayStart:
				starts = append(starts, d.Detail)
			case audit.ActionConfigChange:
				changes = append(changes, d.Detail)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(starts) != 3 {
		t.Fatalf("%d gateway.start entries, want 3", len(starts))
	}
	for i, want := range []string{first, first, second} {
		if starts[i]["config_sha256"] != want || starts[i]["signing_key_id"] == "" {
			t.Errorf("start %d: %v, want config_sha256 %s and a signing_key_id", i, starts[i], want)
		}
	}
	if len(changes) != 1 || changes[0]["previous_sha256"] != first || changes[0]["config_sha256"] != second {
		t.Fatalf("config.change entries %v, want one from %s to %s", changes, first, second)
	}
}
