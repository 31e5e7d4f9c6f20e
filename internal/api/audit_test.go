package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

// withAudit gives the fixture's server a real audit log, recorded into the fixture's store.
func withAudit(t *testing.T, f *fixture) *audit.Log {
	t.Helper()
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SigningKeys = keys
	l, err := audit.Open(context.Background(), &recorder.Recorder{Store: f.st, Signer: keys, CheckpointEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Audit = l
	return l
}

// auditEntries returns the audit log's entries and the raw bytes of its recording.
func auditEntries(t *testing.T, f *fixture, l *audit.Log) ([]event.AuditData, []byte) {
	t.Helper()
	var out []event.AuditData
	var raw []byte
	err := f.st.Events(context.Background(), l.ID(), 0, func(e *event.Event) error {
		raw = append(append(raw, e.Data...), e.Raw...)
		if e.Type == event.Audit {
			var d event.AuditData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, raw
}

func TestAuditEntries(t *testing.T) {
	const badPassword, targetPassword = "Hunter2-not-alices", "tgt-S3cret-pw"
	tests := []struct {
		name        string
		method      string
		path, user  string
		body        string
		status      int
		want        *event.AuditData // nil: nothing audited
		wantDetails map[string]string
	}{
		{name: "failed login", method: "POST", path: "/api/v1/auth/login",
			body:   `{"username":"alice","password":"` + badPassword + `"}`,
			status: 401, want: &event.AuditData{Action: "login", Actor: "alice", Outcome: "denied"},
			wantDetails: map[string]string{"method": "password"}},
		{name: "login", method: "POST", path: "/api/v1/auth/login", body: `{"username":"bob","password":"pw"}`,
			status: 200, want: &event.AuditData{Action: "login", Actor: "bob", Outcome: "ok"}},
		{name: "target created", method: "POST", path: "/api/v1/targets", user: "root",
			body:   `{"name":"pg9","type":"postgres","address":"10.1.2.3:5432","username":"app","password":"` + targetPassword + `"}`,
			status: 201, want: &event.AuditData{Action: "target.put", Actor: "root", Outcome: "ok", Subject: "pg9"},
			wantDetails: map[string]string{"address": "10.1.2.3:5432", "replaced": "false"}},
		{name: "target refused", method: "POST", path: "/api/v1/targets", user: "alice",
			body:   `{"name":"pg8","type":"postgres","address":"10.1.2.3:5432"}`,
			status: 403, want: &event.AuditData{Action: "target.put", Actor: "alice", Outcome: "denied"}},
		{name: "auditor reads events", method: "GET", path: "/api/v1/sessions/s-alice/events", user: "carol",
			status: 200, want: &event.AuditData{Action: "recording.read", Actor: "carol", Outcome: "ok", Subject: "s-alice"},
			wantDetails: map[string]string{"route": "events", "owner": "alice"}},
		{name: "auditor exports", method: "GET", path: "/api/v1/sessions/s-alice/export", user: "carol",
			status: 200, want: &event.AuditData{Action: "recording.read", Actor: "carol", Outcome: "ok", Subject: "s-alice"},
			wantDetails: map[string]string{"route": "export"}},
		{name: "admin verifies", method: "GET", path: "/api/v1/sessions/s-alice/verify", user: "root",
			status: 200, want: &event.AuditData{Action: "recording.read", Actor: "root", Outcome: "ok", Subject: "s-alice"},
			wantDetails: map[string]string{"route": "verify"}},
		{name: "owner reads her own", method: "GET", path: "/api/v1/sessions/s-alice/events", user: "alice", status: 200},
		{name: "auditor searches statements", method: "GET", path: "/api/v1/sessions?q=select&target=pg", user: "carol",
			status: 200, want: &event.AuditData{Action: "recording.read", Actor: "carol", Outcome: "ok"},
			wantDetails: map[string]string{"route": "search", "q": "select", "target": "pg", "role": "auditor"}},
		{name: "a user searches her own", method: "GET", path: "/api/v1/sessions?q=select", user: "alice", status: 200},
		{name: "listing without a search", method: "GET", path: "/api/v1/sessions", user: "carol", status: 200},
		{name: "another user is refused", method: "GET", path: "/api/v1/sessions/s-alice/events", user: "bob",
			status: 404, want: &event.AuditData{Action: "recording.read", Actor: "bob", Outcome: "denied", Subject: "s-alice"}},
		{name: "no such session", method: "GET", path: "/api/v1/sessions/nope/events", user: "carol", status: 404},
		{name: "delete", method: "DELETE", path: "/api/v1/sessions/s-alice", user: "root",
			status: 405, want: &event.AuditData{Action: "recording.modify", Actor: "root", Outcome: "denied", Subject: "s-alice"},
			wantDetails: map[string]string{"method": "DELETE", "path": "/api/v1/sessions/s-alice"}},
		{name: "admin holds", method: "POST", path: "/api/v1/sessions/s-alice/hold", user: "root",
			body:   `{"hold":true,"reason":"case 42"}`,
			status: 200, want: &event.AuditData{Action: "recording.hold", Actor: "root", Outcome: "ok", Subject: "s-alice"},
			wantDetails: map[string]string{"hold": "true", "reason": "case 42"}},
		{name: "auditor may not hold", method: "POST", path: "/api/v1/sessions/s-alice/hold", user: "carol",
			body:   `{"hold":true}`,
			status: 403, want: &event.AuditData{Action: "recording.hold", Actor: "carol", Outcome: "denied", Subject: "s-alice"}},
		{name: "anonymous hold", method: "POST", path: "/api/v1/sessions/s-alice/hold", body: `{"hold":true}`, status: 401},
		{name: "post elsewhere is still refused", method: "POST", path: "/api/v1/sessions/s-alice/events", user: "root", body: "{}",
			status: 405, want: &event.AuditData{Action: "recording.modify", Actor: "root", Outcome: "denied", Subject: "s-alice"}},
		{name: "delete hold", method: "DELETE", path: "/api/v1/sessions/s-alice/hold", user: "root",
			status: 405, want: &event.AuditData{Action: "recording.modify", Actor: "root", Outcome: "denied", Subject: "s-alice"}},
		{name: "delete by a path not clean", method: "DELETE", path: "/api/v1/sessions/x/../s-alice", user: "root",
			status: 405, want: &event.AuditData{Action: "recording.modify", Actor: "root", Outcome: "denied", Subject: "s-alice"},
			wantDetails: map[string]string{"method": "DELETE", "path": "/api/v1/sessions/x/../s-alice"}},
		{name: "put by a doubled slash", method: "PUT", path: "/api/v1//sessions/s-alice/events", user: "root", body: "{}",
			status: 405, want: &event.AuditData{Action: "recording.modify", Actor: "root", Outcome: "denied", Subject: "s-alice"}},
		{name: "anonymous patch", method: "PATCH", path: "/api/v1/sessions/s-bob/events", body: "{}",
			status: 405, want: &event.AuditData{Action: "recording.modify", Outcome: "denied", Subject: "s-bob"},
			wantDetails: map[string]string{"method": "PATCH", "authenticated": "false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			l := withAudit(t, f)
			res, b := f.do(t, tt.method, tt.path, tt.user, tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, res.StatusCode, b, tt.status)
			}
			got, raw := auditEntries(t, f, l)
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("audited %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("audited %+v, want one entry", got)
			}
			g := got[0]
			if g.Action != tt.want.Action || g.Actor != tt.want.Actor || g.Outcome != tt.want.Outcome || g.Subject != tt.want.Subject || g.Client == "" {
				t.Errorf("entry %+v, want %+v and a client", g, *tt.want)
			}
			for k, v := range tt.wantDetails {
				if g.Detail[k] != v {
					t.Errorf("detail %s = %q, want %q (%v)", k, g.Detail[k], v, g.Detail)
				}
			}
			for _, secret := range []string{badPassword, targetPassword} {
				if strings.Contains(string(raw), secret) {
					t.Errorf("the audit recording holds a password: %s", raw)
				}
			}
		})
	}
}

func TestAuditLogIsARecording(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	f.do(t, "POST", "/api/v1/auth/login", "", `{"username":"alice","password":"wrong"}`)
	f.do(t, "GET", "/api/v1/sessions/s-alice/events", "carol", "")
	// Listed for auditors and admins, not for plain users: it is not theirs.
	for user, want := range map[string]bool{"carol": true, "root": true, "alice": false, "bob": false} {
		_, b := f.do(t, "GET", "/api/v1/sessions", user, "")
		if got := slices.Contains(sessionIDs(t, b), l.ID()+":active"); got != want {
			t.Errorf("%s lists the audit log: %v, want %v", user, got, want)
		}
		if res, _ := f.do(t, "GET", "/api/v1/sessions/"+l.ID()+"/events", user, ""); (res.StatusCode == 200) != want {
			t.Errorf("%s reads the audit log: %d", user, res.StatusCode)
		}
	}
	// Verified like any recording, while it runs (through the API) and once ended.
	res, b := f.do(t, "GET", "/api/v1/sessions/"+l.ID()+"/verify", "carol", "")
	var r verify.Result
	if res.StatusCode != 200 || json.Unmarshal(b, &r) != nil || !r.Intact || r.Checkpoints < 2 {
		t.Fatalf("verify the running audit log: %d %s", res.StatusCode, b)
	}
	if err := l.End(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Once ended, nothing more can be audited, so reads by others are refused.
	if res, _ := f.do(t, "GET", "/api/v1/sessions/s-alice/events", "carol", ""); res.StatusCode != 503 {
		t.Errorf("read after the audit log ended: %d, want 503", res.StatusCode)
	}
	sess, _ := f.st.Session(context.Background(), l.ID())
	v := &verify.Verifier{Keys: f.srv.SigningKeys.(*signing.Keyring).Public(), Session: l.ID()}
	f.st.Events(context.Background(), l.ID(), 0, func(e *event.Event) error { v.Add(e); return nil })
	v.ExpectEnd(sess.Events, sess.Head)
	if r := v.Finish(); !r.Intact {
		t.Fatalf("verify the ended audit log: %+v", r)
	}
	got, _ := auditEntries(t, f, l)
	var actions []string
	for _, e := range got {
		actions = append(actions, e.Action+"/"+e.Actor+"/"+e.Outcome)
	}
	// Reads by its owner do not exist (no one logs in as "airlock"); every other read counts.
	want := []string{"login/alice/denied", "recording.read/carol/ok", "recording.read/carol/ok", "recording.read/root/ok",
		"recording.read/alice/denied", "recording.read/bob/denied", "recording.read/carol/ok"}
	if len(actions) == len(want) {
		// The reads in the loop above come in the map's order.
		slices.Sort(actions[2:])
		slices.Sort(want[2:])
	}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("audit entries %v, want %v", actions, want)
	}
}

// failingAuditor is an audit log whose store has failed.
type failingAuditor struct{}

func (failingAuditor) Record(context.Context, audit.Entry) error {
	return errors.New("disk full")
}

func TestAuditFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.srv.Audit = failingAuditor{}
	for _, tt := range []struct {
		method, path, user, body string
		status                   int
	}{
		{"GET", "/api/v1/sessions/s-alice/events", "carol", "", 503},
		{"GET", "/api/v1/sessions/s-alice/export", "carol", "", 503},
		{"POST", "/api/v1/auth/login", "", `{"username":"alice","password":"pw"}`, 503},
		{"POST", "/api/v1/targets", "root", `{"name":"pg7","type":"postgres","address":"10.0.0.1:5432"}`, 503},
		// Already refused: the answer stays what it was.
		{"POST", "/api/v1/auth/login", "", `{"username":"alice","password":"nope"}`, 401},
		{"DELETE", "/api/v1/sessions/s-alice", "root", "", 405},
		// Not audited at all.
		{"GET", "/api/v1/sessions/s-alice/events", "alice", "", 200},
	} {
		res, b := f.do(t, tt.method, tt.path, tt.user, tt.body)
		if res.StatusCode != tt.status {
			t.Errorf("%s %s as %q: %d %s, want %d", tt.method, tt.path, tt.user, res.StatusCode, b, tt.status)
		}
		if tt.status == 503 && decode(t, b)["code"] != "audit_unavailable" {
			t.Errorf("%s %s: %s", tt.method, tt.path, b)
		}
	}
	if _, err := f.st.GetTarget(context.Background(), "pg7"); err == nil {
		t.Errorf("the target was stored although the change could not be audited")
	}
}

func TestHold(t *testing.T) {
	f := newFixture(t)
	withAudit(t, f)
	hold := func(user, body string, status int) map[string]any {
		t.Helper()
		res, b := f.do(t, "POST", "/api/v1/sessions/s-alice/hold", user, body)
		if res.StatusCode != status {
			t.Fatalf("hold %s: %d %s, want %d", body, res.StatusCode, b, status)
		}
		var out map[string]any
		json.Unmarshal(b, &out)
		return out
	}
	got := hold("root", `{"hold":true,"reason":"litigation"}`, 200)
	if s, _ := got["session"].(map[string]any); s["hold"] != true {
		t.Fatalf("answer %v, want the session on hold", got)
	}
	if s, _ := f.st.Session(context.Background(), "s-alice"); !s.Hold {
		t.Fatal("the store has no hold")
	}
	_, b := f.do(t, "GET", "/api/v1/sessions/s-alice", "root", "")
	if !strings.Contains(string(b), `"hold":true`) {
		t.Fatalf("GET session: %s", b)
	}
	hold("alice", `{"hold":false}`, 403)
	hold("root", `{"reason":"no hold field"}`, 400)
	hold("root", `{"hold":true,"extra":1}`, 400)
	if res, _ := f.do(t, "POST", "/api/v1/sessions/nope/hold", "root", `{"hold":true}`); res.StatusCode != 404 {
		t.Fatalf("hold of an unknown session: %d, want 404", res.StatusCode)
	}
	hold("root", `{"hold":false,"reason":"settled"}`, 200)
	if s, _ := f.st.Session(context.Background(), "s-alice"); s.Hold {
		t.Fatal("the hold was not released")
	}
}

func TestHoldAuditUnavailable(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	if err := l.End(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, b := f.do(t, "POST", "/api/v1/sessions/s-alice/hold", "root", `{"hold":true}`); res.StatusCode != 503 {
		t.Fatalf("hold without an audit log: %d %s, want 503", res.StatusCode, b)
	}
	if s, _ := f.st.Session(context.Background(), "s-alice"); s.Hold {
		t.Fatal("held although the change could not be audited")
	}
}
