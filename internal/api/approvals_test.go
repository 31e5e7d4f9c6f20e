package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/airlock-gw/airlock/internal/approval"
)

// withApprovals gives the fixture's server a broker whose webhook tells the test when a request
// is pending.
func withApprovals(t *testing.T, f *fixture) (*approval.Broker, <-chan string) {
	t.Helper()
	ids := make(chan string, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p approval.Pending
		json.NewDecoder(r.Body).Decode(&p)
		ids <- p.ID
	}))
	t.Cleanup(hook.Close)
	b := &approval.Broker{Webhook: hook.URL}
	f.srv.Approvals = b
	return b, ids
}

type outcome struct {
	o   approval.Outcome
	err error
}

func ask(b *approval.Broker, user string) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		o, err := b.Request(context.Background(), approval.Request{Session: "s-1", User: user, Target: "pg", Statement: "DROP TABLE t", Rule: "r"})
		done <- outcome{o, err}
	}()
	return done
}

func TestApprovals(t *testing.T) {
	f := newFixture(t)
	b, ids := withApprovals(t, f)
	done := ask(b, "alice")
	id := <-ids

	for _, tt := range []struct {
		name, method, path, user, body string
		status                         int
		code                           string
	}{
		{"user cannot list", "GET", "/api/v1/requests", "alice", "", 403, "forbidden"},
		{"auditor cannot decide", "POST", "/api/v1/requests/" + id + "/approve", "carol", "", 403, "forbidden"},
		{"user cannot decide", "POST", "/api/v1/requests/" + id + "/approve", "alice", "", 403, "forbidden"},
		{"unknown", "POST", "/api/v1/requests/nope/approve", "root", "", 404, "not_found"},
		{"bad body", "POST", "/api/v1/requests/" + id + "/deny", "root", `{"why":1}`, 400, "bad_request"},
		{"unauthenticated", "GET", "/api/v1/requests", "", "", 401, "unauthorized"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body := f.do(t, tt.method, tt.path, tt.user, tt.body)
			if res.StatusCode != tt.status || decode(t, body)["code"] != tt.code {
				t.Errorf("%d %s, want %d %s", res.StatusCode, body, tt.status, tt.code)
			}
		})
	}

	for _, u := range []string{"carol", "root"} {
		res, body := f.do(t, "GET", "/api/v1/requests", u, "")
		var ans struct{ Requests []approval.Pending }
		if err := json.Unmarshal(body, &ans); res.StatusCode != 200 || err != nil || len(ans.Requests) != 1 ||
			ans.Requests[0].ID != id || ans.Requests[0].User != "alice" || ans.Requests[0].Statement != "DROP TABLE t" {
			t.Errorf("list as %s: %d %s", u, res.StatusCode, body)
		}
	}

	res, body := f.do(t, "POST", "/api/v1/requests/"+id+"/approve", "root", `{"reason":"ticket 42"}`)
	if m := decode(t, body); res.StatusCode != 200 || m["approved"] != true || m["by"] != "root" || m["reason"] != "ticket 42" {
		t.Fatalf("approve: %d %s", res.StatusCode, body)
	}
	if got := <-done; got.err != nil || got.o != (approval.Outcome{ID: id, Approved: true, By: "root", Reason: "ticket 42"}) {
		t.Errorf("Request = %+v, %v", got.o, got.err)
	}
	res, body = f.do(t, "POST", "/api/v1/requests/"+id+"/deny", "root", "")
	if res.StatusCode != 409 || decode(t, body)["code"] != "decided" {
		t.Errorf("decide twice: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "GET", "/api/v1/requests", "root", "")
	if res.StatusCode != 200 || string(body) != "{\"requests\":[]}\n" {
		t.Errorf("list after: %d %s", res.StatusCode, body)
	}

	// An admin's own request needs another admin.
	done = ask(b, "root")
	id = <-ids
	res, body = f.do(t, "POST", "/api/v1/requests/"+id+"/approve", "root", "")
	if res.StatusCode != 403 || decode(t, body)["code"] != "own_request" {
		t.Errorf("own request: %d %s", res.StatusCode, body)
	}
	b.Decide(id, false, "admin2", "")
	if got := <-done; got.o.Approved || got.o.By != "admin2" {
		t.Errorf("Request = %+v, %v", got.o, got.err)
	}
}

func TestApprovalsDisabled(t *testing.T) {
	f := newFixture(t)
	res, body := f.do(t, "GET", "/api/v1/requests", "root", "")
	if res.StatusCode != 200 || string(body) != "{\"requests\":[]}\n" {
		t.Errorf("list: %d %s", res.StatusCode, body)
	}
	res, _ = f.do(t, "POST", "/api/v1/requests/x/deny", "root", "")
	if res.StatusCode != 404 {
		t.Errorf("decide: %d", res.StatusCode)
	}
}

func TestOpenAPIApprovals(t *testing.T) {
	f := newFixture(t)
	_, b := f.do(t, "GET", "/api/v1/openapi.json", "", "")
	paths := decode(t, b)["paths"].(map[string]any)
	for _, p := range []string{"/api/v1/requests", "/api/v1/requests/{id}/approve", "/api/v1/requests/{id}/deny"} {
		if paths[p] == nil {
			t.Errorf("openapi lacks %s", p)
		}
	}
}
