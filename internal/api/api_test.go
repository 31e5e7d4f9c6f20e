package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

type fixture struct {
	srv     *Server
	st      *apitest.Store
	h       http.Handler
	tokens  map[string]string // user -> token
	metrics *metrics.Metrics
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	hash, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.NewService(bytes.Repeat([]byte("k"), 32), []auth.User{
		{Name: "alice", PasswordHash: hash, Role: auth.RoleUser, Groups: []string{"dba"}},
		{Name: "bob", PasswordHash: hash, Role: auth.RoleUser},
		{Name: "carol", PasswordHash: hash, Role: auth.RoleAuditor},
		{Name: "root", PasswordHash: hash, Role: auth.RoleAdmin},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := apitest.New()
	m := metrics.New()
	srv := &Server{Store: st, Auth: svc, Policy: &policy.Engine{}, Metrics: m,
		Targets: &target.Catalog{Static: map[string]target.Target{"pg": {Name: "pg", Type: "postgres", Address: "127.0.0.1:5432", Password: "secret", Source: "config"}}, Store: st}}
	f := &fixture{srv: srv, st: st, h: srv.Handler(), tokens: map[string]string{}, metrics: m}
	for _, u := range []string{"alice", "bob", "carol", "root"} {
		id, err := svc.Login(context.Background(), u, "pw")
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[u], _, _ = svc.IssueToken(id)
	}
	// alice: one ended session with a query, text rows; bob: one active session.
	ended := t0.Add(time.Minute)
	rec := &apitest.Recording{ID: "s-alice", Start: t0}
	rec.Add(event.SessionStart, 0, mustJSON(event.SessionStartData{User: "alice", Target: "pg"}), nil)
	rec.Add(event.Query, time.Second, mustJSON(event.QueryData{Text: "select 1", Protocol: "simple"}), nil)
	st.Put(store.Session{ID: "s-alice", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0, EndedAt: &ended, EndReason: "client_terminated"}, rec.Evs)
	st.Put(store.Session{ID: "s-bob", User: "bob", Target: "pg", Type: "postgres", StartedAt: t0.Add(2 * time.Hour)}, nil)
	return f
}

func (f *fixture) do(t *testing.T, method, path, user string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[user])
	}
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	res := rw.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	return m
}

func TestHealthz(t *testing.T) {
	f := newFixture(t)
	ready := false
	f.srv.Ready = func() bool { return ready }
	if res, _ := f.do(t, "GET", "/healthz", "", ""); res.StatusCode != 503 {
		t.Fatalf("not ready: got %d", res.StatusCode)
	}
	ready = true
	res, b := f.do(t, "GET", "/healthz", "", "")
	if res.StatusCode != 200 || decode(t, b)["status"] != "ok" {
		t.Fatalf("ready: got %d %s", res.StatusCode, b)
	}
	res, b = f.do(t, "GET", "/metrics", "", "")
	if res.StatusCode != 200 || !strings.Contains(string(b), `airlock_api_requests_total{code="200",route="GET /healthz"} 1`) {
		t.Fatalf("metrics: %d %s", res.StatusCode, b)
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	res, b := f.do(t, "POST", "/api/v1/auth/login", "", `{"username":"alice","password":"pw"}`)
	if res.StatusCode != 200 {
		t.Fatalf("login: %d %s", res.StatusCode, b)
	}
	m := decode(t, b)
	if m["user"] != "alice" || m["role"] != "user" || !strings.HasPrefix(m["token"].(string), auth.TokenPrefix) || m["expires_at"] == nil {
		t.Fatalf("login answer: %s", b)
	}
	if g := m["groups"].([]any); len(g) != 1 || g[0] != "dba" {
		t.Fatalf("groups: %v", g)
	}
	// The token works.
	req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+m["token"].(string))
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	if rw.Code != 200 || decode(t, rw.Body.Bytes())["user"] != "alice" {
		t.Fatalf("whoami: %d %s", rw.Code, rw.Body)
	}

	for _, body := range []string{`{"username":"alice","password":"nope"}`, `{"username":"mallory","password":"pw"}`} {
		res, b = f.do(t, "POST", "/api/v1/auth/login", "", body)
		if res.StatusCode != 401 || decode(t, b)["code"] != "unauthorized" {
			t.Fatalf("bad login %s: %d %s", body, res.StatusCode, b)
		}
	}
	if _, mb := f.do(t, "GET", "/metrics", "", ""); !strings.Contains(string(mb), `airlock_auth_failures_total{protocol="api"} 2`) {
		t.Fatalf("auth failures not counted")
	}
	res, b = f.do(t, "POST", "/api/v1/auth/login", "", `{"username":`)
	if res.StatusCode != 400 || decode(t, b)["code"] != "bad_request" {
		t.Fatalf("bad body: %d %s", res.StatusCode, b)
	}
}

func TestAuthRequired(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct{ name, header string }{
		{"none", ""},
		{"basic", "Basic YWxpY2U6cHc="},
		{"garbage", "Bearer alt_nope.nope"},
		{"not a token", "Bearer hello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/whoami", "/api/v1/sessions", "/api/v1/sessions/s-alice", "/api/v1/sessions/s-alice/events", "/api/v1/targets"} {
				req := httptest.NewRequest("GET", path, nil)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				rw := httptest.NewRecorder()
				f.h.ServeHTTP(rw, req)
				m := decode(t, rw.Body.Bytes())
				if rw.Code != 401 || m["code"] != "unauthorized" || m["error"] == "" || rw.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s: %d %s", path, rw.Code, rw.Body)
				}
			}
		})
	}
	// Expired token.
	svc := f.srv.Auth
	svc.Now = func() time.Time { return time.Now().Add(-13 * time.Hour) }
	old, _, _ := svc.IssueToken(&auth.Identity{User: "alice", Role: auth.RoleUser})
	svc.Now = nil
	f.tokens["old"] = old
	res, b := f.do(t, "GET", "/api/v1/whoami", "old", "")
	if res.StatusCode != 401 || !strings.Contains(string(b), "expired") {
		t.Fatalf("expired: %d %s", res.StatusCode, b)
	}
}

func sessionIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var out struct {
		Sessions []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Sessions == nil {
		t.Fatalf("sessions answer %s: %v", b, err)
	}
	var ids []string
	for _, s := range out.Sessions {
		ids = append(ids, s.ID+":"+s.Status)
	}
	return ids
}

func TestSessionsVisibility(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name, user, query string
		want              string
	}{
		{"user sees own", "alice", "", "s-alice:ended"},
		{"user asking for self", "alice", "?user=alice", "s-alice:ended"},
		{"user asking for another", "alice", "?user=bob", ""},
		{"bob sees own active", "bob", "", "s-bob:active"},
		{"auditor sees all", "carol", "", "s-bob:active,s-alice:ended"},
		{"admin sees all", "root", "", "s-bob:active,s-alice:ended"},
		{"admin filters user", "root", "?user=bob", "s-bob:active"},
		{"window before alice ended", "carol", "?from=2026-03-01T09:00:00Z&to=2026-03-01T10:30:00Z", "s-alice:ended"},
		{"window after alice ended", "carol", "?from=2026-03-01T11:00:00Z", "s-bob:active"},
		{"window with offset zone", "carol", "?to=2026-03-01T11:30:00%2B01:00", "s-alice:ended"},
		{"limit", "carol", "?limit=1", "s-bob:active"},
		{"type", "carol", "?type=ssh", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, b := f.do(t, "GET", "/api/v1/sessions"+tt.query, tt.user, "")
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			if got := strings.Join(sessionIDs(t, b), ","); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		user, id string
		status   int
	}{
		{"alice", "s-alice", 200}, {"alice", "s-bob", 404}, {"bob", "s-alice", 404},
		{"carol", "s-alice", 200}, {"root", "s-bob", 200}, {"root", "nope", 404},
	} {
		for _, suffix := range []string{"", "/events"} {
			res, b := f.do(t, "GET", "/api/v1/sessions/"+tt.id+suffix, tt.user, "")
			if res.StatusCode != tt.status {
				t.Errorf("%s GET %s%s: %d %s", tt.user, tt.id, suffix, res.StatusCode, b)
			}
			if tt.status == 404 && decode(t, b)["code"] != "not_found" {
				t.Errorf("404 body %s", b)
			}
		}
	}
	res, b := f.do(t, "GET", "/api/v1/sessions/s-alice", "alice", "")
	s := decode(t, b)["session"].(map[string]any)
	for _, k := range []string{"id", "user", "target", "type", "client_addr", "started_at", "ended_at", "end_reason", "events", "head", "status"} {
		if _, ok := s[k]; !ok {
			t.Errorf("session lacks %q: %s", k, b)
		}
	}
	_ = res
}

func TestParseFilter(t *testing.T) {
	for _, tt := range []struct {
		query string
		ok    bool
	}{
		{"from=2026-03-01T10:00:00Z", true},
		{"from=2026-03-01T10:00:00.123456789%2B02:00", true},
		{"from=2026-03-01", false},
		{"to=yesterday", false},
		{"from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", false},
		{"limit=-1", false},
		{"limit=x", false},
		{"limit=5", true},
	} {
		t.Run(tt.query, func(t *testing.T) {
			f := newFixture(t)
			res, b := f.do(t, "GET", "/api/v1/sessions?"+tt.query, "root", "")
			if tt.ok != (res.StatusCode == 200) {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			if !tt.ok && decode(t, b)["code"] != "bad_request" {
				t.Fatalf("code: %s", b)
			}
		})
	}
}

func TestImmutable(t *testing.T) {
	f := newFixture(t)
	for _, method := range []string{"PUT", "PATCH", "DELETE"} {
		for _, path := range []string{"/api/v1/sessions", "/api/v1/sessions/s-alice", "/api/v1/sessions/s-alice/events"} {
			for _, user := range []string{"", "root"} {
				res, b := f.do(t, method, path, user, "{}")
				m := decode(t, b)
				if res.StatusCode != 405 || m["code"] != "immutable" || m["error"] != "recordings cannot be modified or deleted" {
					t.Errorf("%s %s as %q: %d %s", method, path, user, res.StatusCode, b)
				}
			}
		}
	}
	res, b := f.do(t, "POST", "/api/v1/sessions/s-alice", "root", "{}")
	if res.StatusCode != 405 || decode(t, b)["code"] != "method_not_allowed" {
		t.Errorf("POST: %d %s", res.StatusCode, b)
	}
	res, b = f.do(t, "GET", "/api/v1/nothing", "root", "")
	if res.StatusCode != 404 || decode(t, b)["code"] != "not_found" {
		t.Errorf("unknown route: %d %s", res.StatusCode, b)
	}
}

// rowsOf packs rows for a rows event.
func rowsOf(rows ...[][]byte) []byte {
	var raw []byte
	for _, r := range rows {
		raw = event.AppendRow(raw, r)
	}
	return raw
}

func be32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

type eventsAnswer struct {
	Events []struct {
		Seq    uint64            `json:"seq"`
		Type   string            `json:"type"`
		Data   json.RawMessage   `json:"data"`
		Rows   []json.RawMessage `json:"rows"`
		Text   *string           `json:"text"`
		Base64 *string           `json:"base64"`
		Prev   string            `json:"prev"`
		Hash   string            `json:"hash"`
		Offset int64             `json:"offset_ns"`
	} `json:"events"`
	Error *string `json:"error"`
}

func TestEventsRendering(t *testing.T) {
	f := newFixture(t)
	rec := &apitest.Recording{ID: "s-rows", Start: t0}
	rec.Add(event.SessionStart, 0, mustJSON(event.SessionStartData{User: "carol"}), nil)
	rec.Add(event.Query, time.Millisecond, mustJSON(event.QueryData{Text: "select"}), nil)
	rec.Add(event.Columns, 2*time.Millisecond, mustJSON(event.ColumnsData{Columns: []event.Column{
		{Name: "a", OID: 25, Format: 0}, {Name: "b", OID: 23, Format: 1}, {Name: "c", OID: 25, Format: 1}, {Name: "d", OID: 999999, Format: 1},
	}}), nil)
	rec.Add(event.Rows, 3*time.Millisecond, mustJSON(event.RowsData{Count: 2}), rowsOf(
		[][]byte{[]byte("héllo"), be32(42), []byte("bin text"), {0xde, 0xad}},
		[][]byte{nil, be32(-7), nil, nil},
	))
	rec.Add(event.Result, 4*time.Millisecond, mustJSON(event.ResultData{Tag: "SELECT 2", Rows: 2}), nil)
	rec.Add(event.CopyOut, 5*time.Millisecond, mustJSON(event.CopyData{Bytes: 4}), []byte("1\t2\n"))
	rec.Add(event.CopyIn, 6*time.Millisecond, mustJSON(event.CopyData{Bytes: 2}), []byte{0xff, 0xfe})
	f.st.Put(store.Session{ID: "s-rows", User: "carol", StartedAt: t0}, rec.Evs)

	res, b := f.do(t, "GET", "/api/v1/sessions/s-rows/events", "carol", "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	var a eventsAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(a.Events) != 7 || a.Error != nil {
		t.Fatalf("events: %s", b)
	}
	for i, e := range a.Events {
		if e.Seq != uint64(i+1) || len(e.Hash) != 64 || len(e.Prev) != 64 {
			t.Fatalf("event %d: %+v", i, e)
		}
		if i > 0 && e.Prev != a.Events[i-1].Hash {
			t.Fatalf("chain broken at %d", i)
		}
	}
	rows := a.Events[3].Rows
	if got := string(rows[0]); got != `["héllo","42","bin text",{"hex":"dead"}]` {
		t.Errorf("row 0: %s", got)
	}
	if got := string(rows[1]); got != `[null,"-7",null,null]` {
		t.Errorf("row 1: %s", got)
	}
	if string(a.Events[3].Data) != `{"count":2}` {
		t.Errorf("data passed as-is: %s", a.Events[3].Data)
	}
	if e := a.Events[5]; e.Text == nil || *e.Text != "1\t2\n" || e.Base64 != nil {
		t.Errorf("copy.out: %+v", e)
	}
	if e := a.Events[6]; e.Base64 == nil || *e.Base64 != "//4=" || e.Text != nil {
		t.Errorf("copy.in: %+v", e)
	}

	// after: the columns event precedes the window but still shapes the rows.
	res, b = f.do(t, "GET", "/api/v1/sessions/s-rows/events?after=3", "carol", "")
	a = eventsAnswer{}
	if err := json.Unmarshal(b, &a); err != nil || len(a.Events) != 4 || a.Events[0].Seq != 4 {
		t.Fatalf("after=3: %s", b)
	}
	if got := string(a.Events[0].Rows[0]); got != `["héllo","42","bin text",{"hex":"dead"}]` {
		t.Errorf("after=3 row 0: %s", got)
	}
	if res, b = f.do(t, "GET", "/api/v1/sessions/s-rows/events?after=x", "carol", ""); res.StatusCode != 400 {
		t.Errorf("after=x: %d %s", res.StatusCode, b)
	}
}

func TestEventsErrorTail(t *testing.T) {
	f := newFixture(t)
	f.st.EventsErr["s-alice"] = errors.New("segment 3: checksum mismatch")
	res, b := f.do(t, "GET", "/api/v1/sessions/s-alice/events", "alice", "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	var a eventsAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("torn recording must still give valid JSON: %s: %v", b, err)
	}
	if len(a.Events) != 2 || a.Error == nil || !strings.Contains(*a.Error, "checksum mismatch") || !strings.Contains(*a.Error, "after 2 events") {
		t.Fatalf("error tail: %s", b)
	}
}

func TestTargets(t *testing.T) {
	f := newFixture(t)
	res, b := f.do(t, "GET", "/api/v1/targets", "alice", "")
	if res.StatusCode != 200 || strings.Contains(string(b), "secret") || !strings.Contains(string(b), `"name":"pg"`) {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}
	body := `{"name":"pg2","type":"postgres","address":"db:5432","username":"app","password":"hunter2","labels":{"env":"prod"}}`
	for _, tt := range []struct {
		name, user, body string
		status           int
		code             string
	}{
		{"user forbidden", "alice", body, 403, "forbidden"},
		{"auditor forbidden", "carol", body, 403, "forbidden"},
		{"created", "root", body, 201, ""},
		{"replaced", "root", body, 200, ""},
		{"config name", "root", `{"name":"pg","type":"postgres","address":"x:1"}`, 409, "exists"},
		{"bad type", "root", `{"name":"m","type":"kafka","address":"x:1"}`, 400, "invalid_target"},
		{"missing address", "root", `{"name":"m","type":"postgres"}`, 400, "invalid_target"},
		{"bad tls", "root", `{"name":"m","type":"postgres","address":"x:1","tls":"maybe"}`, 400, "invalid_target"},
		{"unknown field", "root", `{"name":"m","type":"postgres","address":"x:1","source":"config"}`, 400, "bad_request"},
		{"ssh", "root", `{"name":"web","type":"ssh","address":"h:22","username":"root","private_key_file":"/k","host_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}`, 201, ""},
		{"ssh without host key", "root", `{"name":"w2","type":"ssh","address":"h:22","username":"root","password":"hunter2"}`, 400, "invalid_target"},
		{"ssh bad host key", "root", `{"name":"w2","type":"ssh","address":"h:22","username":"root","password":"hunter2","host_key":"not a key"}`, 400, "invalid_target"},
		{"ssh without credential", "root", `{"name":"w2","type":"ssh","address":"h:22","username":"root","host_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}`, 400, "invalid_target"},
		{"kubernetes", "root", `{"name":"k","type":"kubernetes","address":"https://k:6443","token":"hunter2","impersonate":true}`, 201, ""},
		{"kubernetes without https", "root", `{"name":"k2","type":"kubernetes","address":"k:6443"}`, 400, "invalid_target"},
		{"ssh settings on postgres", "root", `{"name":"m","type":"postgres","address":"x:1","host_key":"ssh-ed25519 AAAA"}`, 400, "invalid_target"},
		{"best-effort", "root", `{"name":"be","type":"postgres","address":"x:1","recording_mode":"best-effort","retention_days":30}`, 201, ""},
		{"bad recording mode", "root", `{"name":"m","type":"postgres","address":"x:1","recording_mode":"lazy"}`, 400, "invalid_target"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, b := f.do(t, "POST", "/api/v1/targets", tt.user, tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			if tt.code != "" && decode(t, b)["code"] != tt.code {
				t.Fatalf("code: %s", b)
			}
			if strings.Contains(string(b), "hunter2") {
				t.Fatalf("password leaked: %s", b)
			}
		})
	}
	stored, err := f.st.GetTarget(context.Background(), "pg2")
	if err != nil || stored.Password != "hunter2" || stored.Source != "api" || stored.CreatedBy != "root" || stored.CreatedAt.IsZero() {
		t.Fatalf("stored: %+v %v", stored, err)
	}
	if be, err := f.st.GetTarget(context.Background(), "be"); err != nil || be.RecordingMode != "best-effort" || be.RetentionDays != 30 {
		t.Fatalf("stored best-effort target: %+v %v", be, err)
	}
	if k, err := f.st.GetTarget(context.Background(), "k"); err != nil || k.Token != "hunter2" || !k.Impersonate {
		t.Fatalf("stored kubernetes target: %+v %v", k, err)
	}
	if res, b := f.do(t, "GET", "/api/v1/targets/k", "bob", ""); res.StatusCode != 200 || strings.Contains(string(b), "hunter2") {
		t.Fatalf("get kubernetes target: %d %s", res.StatusCode, b)
	}
	res, b = f.do(t, "GET", "/api/v1/targets/pg2", "bob", "")
	if res.StatusCode != 200 || strings.Contains(string(b), "hunter2") || !strings.Contains(string(b), `"source":"api"`) {
		t.Fatalf("get: %d %s", res.StatusCode, b)
	}
	if res, b = f.do(t, "GET", "/api/v1/targets/nope", "bob", ""); res.StatusCode != 404 {
		t.Fatalf("get unknown: %d %s", res.StatusCode, b)
	}
}

func TestOpenAPI(t *testing.T) {
	f := newFixture(t)
	res, b := f.do(t, "GET", "/api/v1/openapi.json", "", "")
	m := decode(t, b)
	if res.StatusCode != 200 || m["openapi"] != "3.1.0" {
		t.Fatalf("%d", res.StatusCode)
	}
	paths := m["paths"].(map[string]any)
	for _, p := range []string{"/healthz", "/metrics", "/api/v1/auth/login", "/api/v1/whoami", "/api/v1/sessions", "/api/v1/sessions/{id}", "/api/v1/sessions/{id}/events", "/api/v1/targets", "/api/v1/targets/{name}"} {
		if paths[p] == nil {
			t.Errorf("openapi lacks %s", p)
		}
	}
}
