package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/sealbox"
	"github.com/airlock-gw/airlock/internal/store"
)

func TestEventsReveal(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	keys, err := sealbox.New(bytes.Repeat([]byte{3}, sealbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Sealer = keys
	const card = "4111111111111111"
	id, nonce, ct := keys.Seal(rowsOf([][]byte{[]byte(card)}, [][]byte{[]byte("plain")}), []byte("s-mask"))
	rec := &apitest.Recording{ID: "s-mask", Start: t0}
	rec.Add(event.SessionStart, 0, mustJSON(event.SessionStartData{User: "alice", Target: "pg"}), nil)
	rec.Add(event.Columns, time.Millisecond, mustJSON(event.ColumnsData{Columns: []event.Column{{Name: "card", OID: 25}}}), nil)
	rec.Add(event.Rows, 2*time.Millisecond, mustJSON(event.RowsData{Count: 2}), rowsOf([][]byte{[]byte("************1111")}, [][]byte{[]byte("plain")}))
	rec.Add(event.Checkpoint, 2*time.Millisecond, mustJSON(event.CheckpointData{Seq: 3}), nil)
	rec.Add(event.RowsOriginal, 2*time.Millisecond, mustJSON(event.RowsOriginalData{KeyID: id, Nonce: base64.StdEncoding.EncodeToString(nonce), Count: 2}), ct)
	rec.Add(event.Result, 3*time.Millisecond, mustJSON(event.ResultData{Tag: "SELECT 2", Rows: 2}), nil)
	rec.Add(event.RowsOriginal, 4*time.Millisecond, mustJSON(event.RowsOriginalData{KeyID: id, Nonce: base64.StdEncoding.EncodeToString(nonce), Count: 2}), ct)
	f.st.Put(store.Session{ID: "s-mask", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0}, rec.Evs)

	type answer struct {
		Events []struct {
			Seq          uint64            `json:"seq"`
			Type         string            `json:"type"`
			Rows         []json.RawMessage `json:"rows"`
			RevealedRows []json.RawMessage `json:"revealed_rows"`
			RevealError  string            `json:"reveal_error"`
		} `json:"events"`
	}
	// Without reveal, nobody sees the original, and rows.original shows its metadata only.
	for _, u := range []string{"alice", "carol"} {
		res, b := f.do(t, "GET", "/api/v1/sessions/s-mask/events", u, "")
		if res.StatusCode != 200 || strings.Contains(string(b), card) || strings.Contains(string(b), "revealed_rows") {
			t.Fatalf("%s: %d %s", u, res.StatusCode, b)
		}
		if !strings.Contains(string(b), `"type":"rows.original"`) {
			t.Fatalf("%s: rows.original not listed: %s", u, b)
		}
	}
	// A user, even the session's owner, may not reveal.
	res, b := f.do(t, "GET", "/api/v1/sessions/s-mask/events?reveal=true", "alice", "")
	if res.StatusCode != 403 || strings.Contains(string(b), card) {
		t.Fatalf("alice reveal: %d %s", res.StatusCode, b)
	}
	// An auditor may, and the rows event then carries the originals in order.
	res, b = f.do(t, "GET", "/api/v1/sessions/s-mask/events?reveal=true", "carol", "")
	if res.StatusCode != 200 {
		t.Fatalf("carol reveal: %d %s", res.StatusCode, b)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(a.Events) != 7 {
		t.Fatalf("events: %s", b)
	}
	for i, e := range a.Events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("order: %s", b)
		}
	}
	rows := a.Events[2]
	if len(rows.RevealedRows) != 2 || string(rows.RevealedRows[0]) != `["`+card+`"]` || string(rows.RevealedRows[1]) != `["plain"]` ||
		string(rows.Rows[0]) != `["************1111"]` {
		t.Fatalf("rows event: %s", b)
	}
	if a.Events[6].RevealError == "" || a.Events[6].RevealedRows != nil {
		t.Errorf("a rows.original without its rows event: %s", b)
	}

	entries, _ := auditEntries(t, f, l)
	var denied, ok bool
	for _, e := range entries {
		if e.Action != "recording.reveal" || e.Subject != "s-mask" {
			continue
		}
		switch {
		case e.Actor == "alice" && e.Outcome == "denied":
			denied = true
		case e.Actor == "carol" && e.Outcome == "ok":
			ok = true
		}
	}
	if !denied || !ok {
		t.Fatalf("audit entries %+v", entries)
	}
}

// An original event reveals the error, notice, notification or copy.out it follows, and nothing
// else.
func TestEventsRevealMessages(t *testing.T) {
	f := newFixture(t)
	withAudit(t, f)
	keys, err := sealbox.New(bytes.Repeat([]byte{4}, sealbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Sealer = keys
	const card = "4111111111111111"
	orig := func(of event.Type, plain string) ([]byte, []byte) {
		id, nonce, ct := keys.Seal([]byte(plain), []byte("s-msg"))
		return mustJSON(event.OriginalData{Of: of, KeyID: id, Nonce: base64.StdEncoding.EncodeToString(nonce)}), ct
	}
	rec := &apitest.Recording{ID: "s-msg", Start: t0}
	rec.Add(event.SessionStart, 0, mustJSON(event.SessionStartData{User: "alice", Target: "pg"}), nil)
	rec.Add(event.CopyOut, time.Millisecond, mustJSON(event.CopyData{Bytes: 19}), []byte("1\t************1111\n"))
	d, ct := orig(event.CopyOut, "1\t"+card+"\n")
	rec.Add(event.Original, time.Millisecond, d, ct)
	masked := event.MessageData{Severity: "ERROR", Code: "23505", Message: "dup", Detail: "Key (c)=(************1111)", Source: "target"}
	rec.Add(event.Error, 2*time.Millisecond, mustJSON(masked), nil)
	masked.Detail = "Key (c)=(" + card + ")"
	d, ct = orig(event.Error, string(mustJSON(masked)))
	rec.Add(event.Original, 2*time.Millisecond, d, ct)
	rec.Add(event.Notice, 3*time.Millisecond, mustJSON(event.MessageData{Severity: "NOTICE", Message: "fine"}), nil)
	d, ct = orig(event.Notification, `{"pid":1,"channel":"c","payload":"x"}`) // follows a notice: refused
	rec.Add(event.Original, 3*time.Millisecond, d, ct)
	f.st.Put(store.Session{ID: "s-msg", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0}, rec.Evs)

	res, b := f.do(t, "GET", "/api/v1/sessions/s-msg/events", "carol", "")
	if res.StatusCode != 200 || strings.Contains(string(b), card) || strings.Contains(string(b), "revealed_") {
		t.Fatalf("without reveal: %d %s", res.StatusCode, b)
	}
	res, b = f.do(t, "GET", "/api/v1/sessions/s-msg/events?reveal=true", "carol", "")
	if res.StatusCode != 200 {
		t.Fatalf("reveal: %d %s", res.StatusCode, b)
	}
	var a struct {
		Events []struct {
			Type         string          `json:"type"`
			Text         *string         `json:"text"`
			RevealedText *string         `json:"revealed_text"`
			RevealedData json.RawMessage `json:"revealed_data"`
			RevealError  string          `json:"reveal_error"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &a); err != nil || len(a.Events) != 7 {
		t.Fatalf("%s: %v", b, err)
	}
	if e := a.Events[1]; e.RevealedText == nil || *e.RevealedText != "1\t"+card+"\n" || *e.Text != "1\t************1111\n" {
		t.Errorf("copy.out: %s", b)
	}
	var md event.MessageData
	if err := json.Unmarshal(a.Events[3].RevealedData, &md); err != nil || md.Detail != "Key (c)=("+card+")" {
		t.Errorf("error: %s", b)
	}
	if e := a.Events[5]; e.RevealedData != nil || a.Events[6].RevealError == "" {
		t.Errorf("an original of a notification after a notice: %s", b)
	}
}
