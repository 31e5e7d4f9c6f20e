package api

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

// signedSession records a real, signed session of alice into the fixture's store.
func signedSession(t *testing.T, f *fixture) (string, *signing.Keyring) {
	t.Helper()
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SigningKeys = keys
	r := &recorder.Recorder{Store: f.st, Signer: keys, CheckpointEvents: 2}
	s, err := r.Start(context.Background(), recorder.Info{Protocol: "postgres", Target: "pg", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.Record(event.Query, event.QueryData{Text: "select 1", Protocol: "simple"}, nil)
	}
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	return s.ID(), keys
}

func TestVerifyEndpoint(t *testing.T) {
	f := newFixture(t)
	id, _ := signedSession(t, f)
	res, b := f.do(t, "GET", "/api/v1/sessions/"+id+"/verify", "alice", "")
	var r verify.Result
	if res.StatusCode != 200 || json.Unmarshal(b, &r) != nil || !r.Intact || r.Events != 8 || r.Checkpoints != 3 || r.Findings == nil {
		t.Fatalf("verify: %d %s", res.StatusCode, b)
	}
	if res, _ := f.do(t, "GET", "/api/v1/sessions/"+id+"/verify", "bob", ""); res.StatusCode != 404 {
		t.Fatalf("bob verifies alice's session: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/sessions/"+id+"/verify", "carol", ""); res.StatusCode != 200 {
		t.Fatalf("auditor: %d", res.StatusCode)
	}
	// The fixture's unsigned session: not intact, and says why.
	_, b = f.do(t, "GET", "/api/v1/sessions/s-alice/verify", "alice", "")
	if json.Unmarshal(b, &r) != nil || r.Intact || len(r.Findings) == 0 || r.Findings[0].Kind != verify.Truncated {
		t.Fatalf("unsigned session: %s", b)
	}
}

func TestSigningKeysEndpoint(t *testing.T) {
	f := newFixture(t)
	_, keys := signedSession(t, f)
	res, b := f.do(t, "GET", "/api/v1/signing-keys", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	parsed, err := signing.ParsePublicKeys(b)
	if err != nil || len(parsed) != 1 || parsed[0].ID != keys.KeyID() {
		t.Fatalf("keys %s: %+v %v", b, parsed, err)
	}
	var doc struct {
		Keys []verify.KeyJSON `json:"keys"`
	}
	json.Unmarshal(b, &doc)
	if len(doc.Keys) != 1 || doc.Keys[0].Algorithm != "ed25519" || !doc.Keys[0].Current {
		t.Fatalf("keys %s", b)
	}
}

func TestExportEndpoint(t *testing.T) {
	f := newFixture(t)
	id, keys := signedSession(t, f)
	res, b := f.do(t, "GET", "/api/v1/sessions/"+id+"/export", "alice", "")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s", res.StatusCode, b)
	}
	v := &verify.Verifier{Keys: keys.Public()}
	h, err := verify.ReadExport(bytes.NewReader(b), nil, func(e *event.Event) error { v.Add(e); return nil })
	if err != nil || h.SessionID() != id || len(h.SigningKeys) != 1 {
		t.Fatalf("export header %+v, %v", h, err)
	}
	if r := v.Finish(); !r.Intact || r.Events != 8 {
		t.Fatalf("export verifies: %+v", r)
	}
	if res, _ := f.do(t, "GET", "/api/v1/sessions/"+id+"/export", "bob", ""); res.StatusCode != 404 {
		t.Fatalf("bob exports alice's session: %d", res.StatusCode)
	}
}
