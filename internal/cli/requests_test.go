package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/target"
)

// requestsHarness serves the API with an approval broker that posts each pending request to
// hook, for root (an admin) and alice (a user); the harness is signed in as root.
func requestsHarness(t *testing.T, hook http.HandlerFunc) (*harness, *approval.Broker) {
	t.Helper()
	hash, _ := auth.HashPassword("pw")
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{
		{Name: "alice", PasswordHash: hash, Role: auth.RoleUser},
		{Name: "root", PasswordHash: hash, Role: auth.RoleAdmin},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := apitest.New()
	hs := httptest.NewServer(hook)
	t.Cleanup(hs.Close)
	b := &approval.Broker{Now: func() time.Time { return t0 }, Webhook: hs.URL}
	srv := &api.Server{Store: st, Auth: svc, Policy: &policy.Engine{}, Targets: &target.Catalog{Store: st}, Approvals: b}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return (&harness{url: ts.URL, st: st, auth: svc, vars: map[string]string{"XDG_CONFIG_HOME": t.TempDir()}}).as(t, "root"), b
}

func TestRequests(t *testing.T) {
	// The webhook tells the test when a request is pending.
	ids := make(chan string, 4)
	h, b := requestsHarness(t, func(w http.ResponseWriter, r *http.Request) {
		var p approval.Pending
		json.NewDecoder(r.Body).Decode(&p)
		ids <- p.ID
	})

	code, out, errOut := h.run(t, runRequests, "list")
	if code != 0 || out != "" || !strings.Contains(errOut, "No requests") {
		t.Fatalf("empty list: %d %q %q", code, out, errOut)
	}

	type result struct {
		o   approval.Outcome
		err error
	}
	ask := func() <-chan result {
		done := make(chan result, 1)
		go func() {
			o, err := b.Request(context.Background(), approval.Request{Session: "s1", User: "alice", Target: "pg",
				Statement: "DELETE\n  FROM payments", Rule: "no-mass-delete"})
			done <- result{o, err}
		}()
		return done
	}

	done := ask()
	id := <-ids
	code, out, _ = h.run(t, runRequests, "list") // the harness clock is t0+24h: expired, shown as 0s
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[1], id) || !strings.Contains(lines[1], "DELETE FROM payments") || !strings.Contains(lines[1], "alice") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = h.run(t, runRequests, "list", "--json")
	if code != 0 || !strings.Contains(out, `"id": "`+id+`"`) {
		t.Fatalf("list --json: %d %s", code, out)
	}
	code, out, errOut = h.run(t, runRequests, "approve", id, "--reason", "ticket 7")
	if code != 0 || !strings.Contains(out, "Approved request "+id) {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	if r := <-done; !r.o.Approved || r.o.By != "root" || r.o.Reason != "ticket 7" {
		t.Errorf("outcome %+v, %v", r.o, r.err)
	}
	if code, _, errOut = h.run(t, runRequests, "deny", id); code != 1 || !strings.Contains(errOut, "409") {
		t.Errorf("deny decided: %d %s", code, errOut)
	}

	done = ask()
	id = <-ids
	h.as(t, "alice")
	if code, _, errOut = h.run(t, runRequests, "deny", id); code != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Errorf("non-admin deny: %d %s", code, errOut)
	}
	h.as(t, "root")
	if code, out, _ = h.run(t, runRequests, "deny", id); code != 0 || !strings.Contains(out, "Denied request") {
		t.Errorf("deny: %d %s", code, out)
	}
	if r := <-done; r.o.Approved {
		t.Errorf("outcome %+v", r.o)
	}
	if code, _, _ = h.run(t, runRequests, "approve"); code != 2 {
		t.Errorf("approve without ID: %d", code)
	}
	if code, _, errOut = h.run(t, runRequests, "approve", "nope"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("unknown: %d %s", code, errOut)
	}
}

// A pending statement is the requester's text: controls in it are shown as escapes, so that it
// cannot redraw its row of the list and show the approver a harmless statement instead.
func TestRequestsListShowsControlsAsText(t *testing.T) {
	pending := make(chan struct{}, 1) // the webhook says when the request is pending
	h, b := requestsHarness(t, func(w http.ResponseWriter, r *http.Request) { pending <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go b.Request(ctx, approval.Request{Session: "s1", User: "mallory", Target: "pg", Rule: "no-drop",
		Statement: "drop table payments /*\x1b[2K\x1b[1G x  mallory  pg  s1  no-drop  0s  select 1 */"})
	<-pending
	_, out, _ := h.run(t, runRequests, "list")
	if !strings.Contains(out, `drop table payments /*\x1b[2K\x1b[1G`) || strings.Contains(out, "\x1b") {
		t.Fatalf("requests list printed the statement's controls:\n%q", out)
	}
}
