package cli

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

func TestSessionsShowReveal(t *testing.T) {
	h := newHarness(t)
	const card = "4111111111111111"
	id, nonce, ct := h.keys.Seal(event.AppendRow(nil, [][]byte{[]byte(card)}), []byte("s3"))
	rec := &apitest.Recording{ID: "s3", Start: t0}
	rec.Add(event.SessionStart, 0, j(event.SessionStartData{User: "alice", Target: "pg"}), nil)
	rec.Add(event.Columns, time.Millisecond, j(event.ColumnsData{Columns: []event.Column{{Name: "card", OID: 25}}}), nil)
	rec.Add(event.Rows, 2*time.Millisecond, j(event.RowsData{Count: 1}), event.AppendRow(nil, [][]byte{[]byte("************1111")}))
	rec.Add(event.RowsOriginal, 2*time.Millisecond, j(event.RowsOriginalData{KeyID: id, Nonce: base64.StdEncoding.EncodeToString(nonce), Count: 1}), ct)
	rec.Add(event.Result, 3*time.Millisecond, j(event.ResultData{Tag: "SELECT 1", Rows: 1}), nil)
	h.st.Put(store.Session{ID: "s3", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0}, rec.Evs)

	// The owner, a user, may not reveal.
	h.as(t, "alice")
	code, out, errOut := h.run(t, runSessions, "show", "s3", "--reveal")
	if code == 0 || !strings.Contains(errOut, "403") || strings.Contains(out, card) {
		t.Fatalf("alice: %d %s %s", code, out, errOut)
	}
	code, out, _ = h.run(t, runReplay, "s3", "--speed", "0")
	if code != 0 || strings.Contains(out, card) || !strings.Contains(out, "************1111") {
		t.Fatalf("replay: %d %s", code, out)
	}
	h.as(t, "root")
	code, out, errOut = h.run(t, runSessions, "show", "s3", "--reveal")
	if code != 0 || !strings.Contains(out, "Revealed") || !strings.Contains(out, card) {
		t.Fatalf("root: %d %s %s", code, out, errOut)
	}
	code, out, errOut = h.run(t, runReplay, "s3", "--speed", "0", "--reveal")
	if code != 0 || !strings.Contains(out, card) {
		t.Fatalf("replay --reveal: %d %s %s", code, out, errOut)
	}
}
