package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
)

// writeRecordings records, through the recorder and before the gateway starts, a Kubernetes
// session (an API request and its answer, a request the gateway denied, an exec's long output)
// and an SSH session with what its terminal does not show (an sftp write, a forward, a refused
// request, an exit status), and a PostgreSQL session that got a notification.
func writeRecordings(t *testing.T, dataDir string) (kube, ssh, pg string) {
	t.Helper()
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	now := start
	rec, closeStore := offlineRecorder(t, dataDir, func() time.Time { now = now.Add(time.Millisecond); return now })
	defer closeStore()
	session := func(typ, target string, record func(s *recorder.Session)) string {
		s, err := rec.Start(context.Background(), recorder.Info{Protocol: typ, Target: target, User: "alice", Client: "127.0.0.1:40000",
			Start: event.SessionStartData{User: "alice", Role: "user", Target: target, TargetType: typ, ClientAddr: "127.0.0.1:40000"}})
		if err != nil {
			t.Fatal(err)
		}
		record(s)
		if err := s.End(context.Background(), event.SessionEndData{Reason: "client_disconnected"}); err != nil {
			t.Fatal(err)
		}
		return s.ID()
	}
	kube = session("kubernetes", "k1", func(s *recorder.Session) {
		s.Record(event.KubeRequest, event.KubeRequestData{ID: 1, Method: "DELETE", Path: "/api/v1/namespaces/prod/pods/web-0",
			Verb: "delete", Resource: "pods", Namespace: "prod", Name: "web-0"}, nil)
		s.Record(event.KubeResponse, event.KubeResponseData{ID: 1, Status: 200, DurationNS: 4e6, Source: "target",
			Body: event.BodyInfo{Bytes: 33}}, []byte(`{"kind":"Pod","metadata":{"name":"web-0"}}`))
		s.Record(event.KubeRequest, event.KubeRequestData{ID: 2, Method: "POST", Path: "/api/v1/namespaces/prod/secrets",
			Verb: "create", Resource: "secrets", Namespace: "prod", Denied: true, Rule: "no-secrets"}, nil)
		s.Record(event.KubeResponse, event.KubeResponseData{ID: 2, Status: 403, Source: "gateway", Message: "denied by policy"}, nil)
		s.Record(event.TerminalOutput, event.TerminalData{Channel: 3, Bytes: 3000}, []byte(strings.Repeat("x", 2999)+"END-OF-OUTPUT"))
	})
	ssh = session("ssh", "host1", func(s *recorder.Session) {
		s.Record(event.TerminalResize, map[string]any{"channel": 0, "cols": 80, "rows": 24, "term": "xterm"}, nil)
		s.Record(event.Exec, event.ExecData{Channel: 0, Kind: "shell", PTY: true}, nil)
		s.Record(event.TerminalOutput, event.TerminalData{Channel: 0, Bytes: 2}, []byte("$ "))
		s.Record(event.FileTransfer, event.FileTransferData{Channel: 1, Tool: "sftp", Op: "write", Path: "/etc/sudoers.d/me", BytesWritten: 42, Status: "ok"}, nil)
		s.Record(event.Forward, event.ForwardData{Channel: 2, Kind: "local", Destination: "10.0.0.5:5432"}, nil)
		s.Record(event.Denied, event.DeniedData{Request: "auth-agent", Reason: "agent forwarding is not allowed"}, nil)
		status := 3
		s.Record(event.ExecExit, event.ExitData{Channel: 0, Status: &status}, nil)
	})
	pg = session("postgres", "pg", func(s *recorder.Session) {
		s.Record(event.Query, event.QueryData{Text: "select 'a\u202e'; drop table t; --", Protocol: "simple"}, nil)
		s.Record(event.Query, event.QueryData{Text: "listen jobs", Protocol: "simple"}, nil)
		s.Record(event.Result, event.ResultData{Tag: "LISTEN"}, nil)
		s.Record(event.Notification, event.NotificationData{PID: 42, Channel: "jobs", Payload: "run-now"}, nil)
	})
	return kube, ssh, pg
}

// TestUIShowsWhatThePlayerDoesNot: the session page of a Kubernetes session shows its API
// requests, their answers and a denial, and says where it cut a long output; the page of an
// SSH session shows, below its player, the file transfer, forward, refusal and exit that the
// terminal never drew; a PostgreSQL session's page shows its notifications, and a statement's
// bidirectional override as a code point, not reordering the text after it.
func TestUIShowsWhatThePlayerDoesNot(t *testing.T) {
	requireBinary(t)
	requirePostgres(t)
	b := newBrowser(t)
	g := newGateway(t, t.TempDir(), gwConfig{})
	kube, ssh, pg := writeRecordings(t, g.DataDir)
	g.stopAtCleanup(t)
	g.start(t)
	base := g.apiURL()
	b.signIn(base, "audrey", audPassword)

	b.do("open the Kubernetes session", chromedp.Navigate(base+"/#/sessions/"+kube), chromedp.WaitVisible(chromedp.CSS("ol.timeline li.ev")))
	b.waitJS("the timeline is drawn to the session's end", `document.querySelector('#content').textContent.includes('Session end')`)
	content := b.text("#content")
	for _, want := range []string{
		"DELETE /api/v1/namespaces/prod/pods/web-0", "delete pods in prod web-0", "200",
		"POST /api/v1/namespaces/prod/secrets", "Denied by rule no-secrets", "403", "denied by policy",
		"1012 more characters: export the recording for all of it",
	} {
		if !strings.Contains(content, want) {
			t.Errorf("the Kubernetes session's page lacks %q:\n%s", want, content)
		}
	}
	b.screenshot("kubernetes-session")

	b.do("open the SSH session", chromedp.Navigate(base+"/#/sessions/"+ssh), chromedp.WaitVisible(chromedp.CSS("#session-events ol.timeline")))
	events := b.text("#session-events")
	for _, want := range []string{"sftp write", "/etc/sudoers.d/me", "42 bytes written", "local forward to 10.0.0.5:5432",
		"Denied auth-agent", "agent forwarding is not allowed", "exit status 3"} {
		if !strings.Contains(events, want) {
			t.Errorf("the SSH session's page lacks %q:\n%s", want, events)
		}
	}
	b.screenshot("ssh-session-events")

	b.do("open the PostgreSQL session", chromedp.Navigate(base+"/#/sessions/"+pg), chromedp.WaitVisible(chromedp.CSS("ol.timeline li.ev")))
	b.waitJS("the timeline is drawn to the session's end", `document.querySelector('#content').textContent.includes('Session end')`)
	got := b.text("#content")
	if !strings.Contains(got, `Notification on "jobs" from pid 42: run-now`) {
		t.Errorf("the PostgreSQL session's page lacks its notification:\n%s", got)
	}
	// A bidirectional override would show the statement's end reversed: it is shown as a code.
	if !strings.Contains(got, "select 'a<U+202E>'; drop table t; --") || strings.Contains(got, "\u202e") {
		t.Errorf("the statement with a right-to-left override is not shown as sent:\n%q", got)
	}
}
