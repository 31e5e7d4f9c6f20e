package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// webLogin signs in through POST /api/v1/auth/session and returns the cookie and CSRF token.
func webLogin(t *testing.T, f *fixture, user string) (*http.Cookie, string) {
	t.Helper()
	req := httptest.NewRequest("POST", "/api/v1/auth/session", strings.NewReader(`{"username":"`+user+`","password":"pw"}`))
	req.Header.Set(CSRFHeader, "login")
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	if rw.Code != 200 {
		t.Fatalf("web login: %d %s", rw.Code, rw.Body)
	}
	var c *http.Cookie
	for _, x := range rw.Result().Cookies() {
		if x.Name == SessionCookie {
			c = x
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/", c)
	}
	m := decode(t, rw.Body.Bytes())
	csrf, _ := m["csrf_token"].(string)
	if csrf == "" || m["user"] != user || m["authenticated"] != true {
		t.Fatalf("web login answer = %v", m)
	}
	return c, csrf
}

func cookieReq(f *fixture, method, path, body string, c *http.Cookie, csrf string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if c != nil {
		req.AddCookie(c)
	}
	if csrf != "" {
		req.Header.Set(CSRFHeader, csrf)
	}
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	return rw
}

func TestWebSessionCookieAndCSRF(t *testing.T) {
	f := newFixture(t)
	// Signing in needs the CSRF header (any value): a cross-site form cannot send it.
	req := httptest.NewRequest("POST", "/api/v1/auth/session", strings.NewReader(`{"username":"root","password":"pw"}`))
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	if rw.Code != http.StatusForbidden || len(rw.Result().Cookies()) != 0 {
		t.Fatalf("login without the CSRF header: %d, cookies %v; want 403 and none", rw.Code, rw.Result().Cookies())
	}
	req = httptest.NewRequest("POST", "/api/v1/auth/session", strings.NewReader(`{"username":"root","password":"nope"}`))
	req.Header.Set(CSRFHeader, "x")
	rw = httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	if rw.Code != http.StatusUnauthorized || len(rw.Result().Cookies()) != 0 {
		t.Fatalf("wrong password: %d, cookies %v", rw.Code, rw.Result().Cookies())
	}

	c, csrf := webLogin(t, f, "root")
	// Reads work with the cookie alone.
	if rw := cookieReq(f, "GET", "/api/v1/sessions", "", c, ""); rw.Code != 200 {
		t.Fatalf("GET sessions by cookie: %d %s", rw.Code, rw.Body)
	}
	if rw := cookieReq(f, "GET", "/api/v1/auth/session", "", c, ""); !strings.Contains(rw.Body.String(), csrf) {
		t.Fatalf("GET auth/session does not give the CSRF token back: %s", rw.Body)
	}
	// A change without the token, or with a wrong one, is refused and not made.
	body := `{"name":"pg2","type":"postgres","address":"127.0.0.1:5432"}`
	for _, tok := range []string{"", "wrong", csrfToken("another-token")} {
		if rw := cookieReq(f, "POST", "/api/v1/targets", body, c, tok); rw.Code != http.StatusForbidden || !strings.Contains(rw.Body.String(), `"csrf"`) {
			t.Fatalf("POST by cookie with CSRF %q: %d %s, want 403 csrf", tok, rw.Code, rw.Body)
		}
	}
	if _, err := f.st.GetTarget(context.Background(), "pg2"); err == nil {
		t.Fatal("a target was registered by a request without a valid CSRF token")
	}
	if rw := cookieReq(f, "POST", "/api/v1/targets", body, c, csrf); rw.Code != http.StatusCreated {
		t.Fatalf("POST by cookie with CSRF: %d %s", rw.Code, rw.Body)
	}
	// Bearer auth is unchanged: no CSRF header needed, and the cookie is not consulted.
	res, b := f.do(t, "POST", "/api/v1/targets", "root", `{"name":"pg3","type":"postgres","address":"127.0.0.1:5432"}`)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("bearer POST: %d %s", res.StatusCode, b)
	}
	req = httptest.NewRequest("GET", "/api/v1/whoami", nil)
	req.AddCookie(c)
	req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
	rw = httptest.NewRecorder()
	f.h.ServeHTTP(rw, req)
	if !strings.Contains(rw.Body.String(), `"user":"alice"`) {
		t.Fatalf("bearer and cookie together: %s, want the bearer's identity", rw.Body)
	}
	// A forged cookie is 401; signing out clears the cookie.
	if rw := cookieReq(f, "GET", "/api/v1/whoami", "", &http.Cookie{Name: SessionCookie, Value: "forged"}, ""); rw.Code != http.StatusUnauthorized {
		t.Fatalf("forged cookie: %d", rw.Code)
	}
	rw = cookieReq(f, "DELETE", "/api/v1/auth/session", "", c, csrf)
	if rw.Code != http.StatusNoContent {
		t.Fatalf("sign out: %d %s", rw.Code, rw.Body)
	}
	if cs := rw.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("sign out cookies = %v, want the session cookie removed", cs)
	}
	if rw := cookieReq(f, "GET", "/api/v1/auth/session", "", nil, ""); !strings.Contains(rw.Body.String(), `"authenticated":false`) || !strings.Contains(rw.Body.String(), `"password"`) {
		t.Fatalf("GET auth/session signed out: %s", rw.Body)
	}
}

func TestSessionsStatusTextAndPages(t *testing.T) {
	f := newFixture(t)
	for i, id := range []string{"p1", "p2", "p3"} {
		rec := newRec(id)
		rec.Add(event.Query, time.Second, mustJSON(event.QueryData{Text: "select * from invoices_" + id}), nil)
		end := t0.Add(time.Duration(10+i) * time.Hour)
		f.st.Put(store.Session{ID: id, User: "alice", Target: "pg", Type: "postgres", StartedAt: t0.Add(time.Duration(9+i) * time.Hour), EndedAt: &end}, rec.Evs)
	}
	res, b := f.do(t, "GET", "/api/v1/sessions?q=INVOICES&limit=2", "carol", "")
	if got := strings.Join(sessionIDs(t, b), " "); res.StatusCode != 200 || got != "p3:ended p2:ended" {
		t.Fatalf("q=INVOICES limit 2: %d %q", res.StatusCode, got)
	}
	next, _ := decode(t, b)["next"].(string)
	if next == "" {
		t.Fatalf("a full page has no next cursor: %s", b)
	}
	_, b = f.do(t, "GET", "/api/v1/sessions?q=INVOICES&limit=2&before="+next, "carol", "")
	if got := strings.Join(sessionIDs(t, b), " "); got != "p1:ended" {
		t.Fatalf("page 2 = %q, want p1", got)
	}
	if _, ok := decode(t, b)["next"]; ok {
		t.Fatalf("a short page has a next cursor: %s", b)
	}
	_, b = f.do(t, "GET", "/api/v1/sessions?status=active", "carol", "")
	if got := strings.Join(sessionIDs(t, b), " "); got != "s-bob:active" {
		t.Fatalf("status=active = %q, want s-bob", got)
	}
	// A user's text search still sees only their own sessions.
	_, b = f.do(t, "GET", "/api/v1/sessions?q=invoices", "bob", "")
	if got := sessionIDs(t, b); len(got) != 0 {
		t.Fatalf("bob's search found %v", got)
	}
	for _, q := range []string{"status=paused", "before=x", "before=12_a/b"} {
		if res, _ := f.do(t, "GET", "/api/v1/sessions?"+q, "carol", ""); res.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, res.StatusCode)
		}
	}
}

func newRec(id string) *apitest.Recording {
	r := &apitest.Recording{ID: id, Start: t0}
	r.Add(event.SessionStart, 0, mustJSON(event.SessionStartData{User: "alice", Target: "pg"}), nil)
	return r
}

type memAudit struct {
	mu sync.Mutex
	es []audit.Entry
}

// recordAudit makes the fixture's server audit into memory, and returns where.
func (f *fixture) recordAudit() *memAudit {
	aud := &memAudit{}
	f.srv.Audit = aud
	f.h = f.srv.Handler()
	return aud
}

func (m *memAudit) Record(_ context.Context, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es = append(m.es, e)
	return nil
}

func (m *memAudit) entries() []audit.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Entry(nil), m.es...)
}

type fakeTerminator struct {
	mu    sync.Mutex
	cause map[string]error
}

func (f *fakeTerminator) Terminate(id string, cause error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != "s-bob" {
		return false
	}
	f.cause[id] = cause
	return true
}

func TestTerminate(t *testing.T) {
	f := newFixture(t)
	ft := &fakeTerminator{cause: map[string]error{}}
	f.srv.Terminator = ft
	aud := f.recordAudit()
	if res, _ := f.do(t, "POST", "/api/v1/sessions/s-bob/terminate", "carol", `{"reason":"x"}`); res.StatusCode != http.StatusForbidden {
		t.Fatalf("auditor terminate: %d, want 403", res.StatusCode)
	}
	if res, _ := f.do(t, "POST", "/api/v1/sessions/s-bob/terminate", "root", `{}`); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("terminate without a reason: %d, want 400", res.StatusCode)
	}
	if res, _ := f.do(t, "POST", "/api/v1/sessions/s-alice/terminate", "root", `{"reason":"x"}`); res.StatusCode != http.StatusConflict {
		t.Fatalf("terminate an ended session: %d, want 409", res.StatusCode)
	}
	if res, b := f.do(t, "POST", "/api/v1/sessions/s-bob/terminate", "root", `{"reason":"maintenance window"}`); res.StatusCode != http.StatusAccepted {
		t.Fatalf("terminate: %d %s", res.StatusCode, b)
	}
	cause := ft.cause["s-bob"]
	if !errors.Is(cause, engine.ErrTerminated) || !strings.Contains(cause.Error(), "maintenance window") {
		t.Fatalf("cause = %v, want ErrTerminated with the reason", cause)
	}
	var ok, denied int
	for _, e := range aud.entries() {
		if e.Action == "session.terminate" {
			if e.Outcome == "ok" && e.Subject == "s-bob" && e.Detail["reason"] == "maintenance window" {
				ok++
			}
			if e.Outcome == "denied" && e.Actor == "carol" {
				denied++
			}
		}
	}
	if ok != 1 || denied != 1 {
		t.Fatalf("audit: %d ok and %d denied session.terminate entries, want 1 and 1: %+v", ok, denied, aud.entries())
	}
}

func TestLiveStreamsUntilEnd(t *testing.T) {
	f := newFixture(t)
	rec := newRec("live1")
	f.st.Put(store.Session{ID: "live1", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0}, rec.Evs)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/sessions/live1/live", nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	next := func() (string, string) {
		var name, data string
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				name = l[7:]
			case strings.HasPrefix(l, "data: "):
				data = l[6:]
			case l == "" && name != "":
				return name, data
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return "", ""
	}
	if n, d := next(); n != "event" || !strings.Contains(d, `"session.start"`) {
		t.Fatalf("first = %s %s", n, d)
	}
	// A statement recorded while the watcher waits reaches it, then the end.
	rec.Add(event.Query, 2*time.Second, mustJSON(event.QueryData{Text: "select '<script>x</script>'"}), nil)
	end := t0.Add(time.Minute)
	f.st.Put(store.Session{ID: "live1", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0, EndedAt: &end}, rec.Evs)
	if n, d := next(); n != "event" || !strings.Contains(d, `\u003cscript\u003ex`) {
		t.Fatalf("second = %s %s", n, d)
	}
	if n, d := next(); n != "end" || !strings.Contains(d, `"status":"ended"`) {
		t.Fatalf("third = %s %s", n, d)
	}
}

func TestExportAsciicast(t *testing.T) {
	f := newFixture(t)
	rec := newRec("term1")
	rec.Add("terminal.output", 100*time.Millisecond, mustJSON(map[string]any{"channel": 0}), []byte("before size "))
	rec.Add("terminal.resize", 200*time.Millisecond, mustJSON(map[string]any{"channel": 0, "cols": 100, "rows": 30}), nil)
	rec.Add("terminal.output", 300*time.Millisecond, mustJSON(map[string]any{"channel": 0}), []byte("caf\xc3"))
	rec.Add("terminal.output", 400*time.Millisecond, mustJSON(map[string]any{"channel": 0}), []byte("\xa9 <b>\r\n"))
	rec.Add("terminal.input", 500*time.Millisecond, mustJSON(map[string]any{"channel": 0}), []byte("lss\x7f -l"))
	rec.Add("terminal.input", 600*time.Millisecond, mustJSON(map[string]any{"channel": 0}), []byte("a\r"))
	rec.Add("terminal.resize", 700*time.Millisecond, mustJSON(map[string]any{"channel": 0, "cols": 120, "rows": 40}), nil)
	rec.Add("exec", 800*time.Millisecond, mustJSON(map[string]any{"channel": 1, "kind": "exec", "command": "uptime"}), nil)
	end := t0.Add(time.Second)
	f.st.Put(store.Session{ID: "term1", User: "alice", Target: "host", Type: "ssh", StartedAt: t0, EndedAt: &end}, rec.Evs)
	res, b := f.do(t, "GET", "/api/v1/sessions/term1/export?format=asciicast", "alice", "")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-asciicast" {
		t.Fatalf("export: %d %q %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{
		`{"env":{"TERM":"xterm-256color"},"height":30,"timestamp":` + fmt.Sprint(t0.Unix()) + `,"title":"airlock session term1: alice -> host","version":2,"width":100}`,
		`[0.1, "o", "before size "]`,
		`[0.3, "o", "caf"]`,
		`[0.4, "o", "é <b>\r\n"]`,
		`[0.6, "m", "ls -la"]`,
		`[0.7, "r", "120x40"]`,
		`[0.8, "m", "uptime"]`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asciicast:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if res, _ := f.do(t, "GET", "/api/v1/sessions/term1/export?format=mp4", "alice", ""); res.StatusCode != 400 {
		t.Errorf("format=mp4: %d, want 400", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/sessions/term1/export?format=asciicast", "bob", ""); res.StatusCode != 404 {
		t.Errorf("someone else's asciicast: %d, want 404", res.StatusCode)
	}
}

func TestTargetKeepPassword(t *testing.T) {
	f := newFixture(t)
	if res, b := f.do(t, "POST", "/api/v1/targets", "root", `{"name":"db2","type":"postgres","address":"127.0.0.1:5432","password":"s3cret"}`); res.StatusCode != 201 {
		t.Fatalf("create: %d %s", res.StatusCode, b)
	}
	if res, b := f.do(t, "POST", "/api/v1/targets", "root", `{"name":"db2","type":"postgres","address":"127.0.0.1:5433","keep_password":true}`); res.StatusCode != 200 || strings.Contains(string(b), "s3cret") {
		t.Fatalf("edit: %d %s", res.StatusCode, b)
	}
	got, _ := f.st.GetTarget(context.Background(), "db2")
	if got.Password != "s3cret" || got.Address != "127.0.0.1:5433" {
		t.Fatalf("after an edit keeping the password: %+v", got)
	}
	f.do(t, "POST", "/api/v1/targets", "root", `{"name":"db2","type":"postgres","address":"127.0.0.1:5433"}`)
	if got, _ := f.st.GetTarget(context.Background(), "db2"); got.Password != "" {
		t.Fatalf("a replacement without keep_password kept the password")
	}
}

// A live terminal view is first drawn from the end of the output so far, not all of it: a
// watcher of a session that printed gigabytes would otherwise have the gateway hold them.
func TestLiveCastDrawsFromTheEndOfTheOutput(t *testing.T) {
	f := newFixture(t)
	rec := newRec("big1")
	rec.Add("terminal.resize", time.Millisecond, mustJSON(map[string]any{"channel": 0, "cols": 80, "rows": 24, "term": "xterm"}), nil)
	line := strings.Repeat("x", 1000) + "\r\n"
	chunk := []byte(strings.Repeat(line, 64)) // about 64 KiB
	for i := range 48 {                       // about 3 MiB
		rec.Add("terminal.output", time.Duration(i+2)*time.Millisecond, mustJSON(map[string]any{"channel": 0}), chunk)
	}
	rec.Add("terminal.output", time.Second, mustJSON(map[string]any{"channel": 0}), []byte("LAST LINE\r\n"))
	end := t0.Add(2 * time.Second)
	f.st.Put(store.Session{ID: "big1", User: "alice", Target: "host", Type: "ssh", StartedAt: t0, EndedAt: &end}, rec.Evs)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/sessions/big1/live?format=asciicast", nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		l, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var reset struct{ Init string }
		if err := json.Unmarshal([]byte(l), &reset); err != nil {
			t.Fatalf("first data %.100q: %v", l, err)
		}
		if len(reset.Init) > maxLiveScreen || !strings.HasSuffix(reset.Init, "LAST LINE\r\n") || !strings.HasPrefix(reset.Init, line) {
			t.Fatalf("init holds %d bytes (at most %d), from %.20q to %.20q; want the end of the output from a line's start",
				len(reset.Init), maxLiveScreen, reset.Init, reset.Init[max(0, len(reset.Init)-20):])
		}
		return
	}
	t.Fatalf("no data: %v", sc.Err())
}
