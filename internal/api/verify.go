package api

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/verify"
)

// verifySession recomputes a session's chain and checks its checkpoints with the gateway's
// public keys. Visibility is that of the session's events.
func (s *Server) verifySession(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.readRecording(r, "verify")
	if err != nil {
		return err
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range s.publicKeys() {
		keys[k.ID] = k.Key
	}
	v := &verify.Verifier{Keys: keys, Session: sess.ID, Live: sess.EndedAt == nil}
	err = s.Store.Events(r.Context(), sess.ID, 0, func(e *event.Event) error {
		v.Add(e)
		return nil
	})
	if err != nil {
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
		s.log().Warn("api: verify: reading the recording failed", "session", sess.ID, "err", err)
		v.ReadError(err)
	}
	if sess.EndedAt != nil && sess.Head != "" {
		v.ExpectEnd(sess.Events, sess.Head)
	}
	return writeJSON(w, http.StatusOK, v.Finish())
}

// exportSession streams a session as JSON Lines (see verify.Encoder): what `airlock export`
// writes and `airlock verify --file` checks offline. A read error ends the stream early; the
// export then fails verification as truncated.
func (s *Server) exportSession(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Query().Get("format") {
	case "", "jsonl":
	case "asciicast":
		return s.exportAsciicast(w, r)
	default:
		return errorf(http.StatusBadRequest, "bad_request", "format: %q is not jsonl or asciicast", r.URL.Query().Get("format"))
	}
	sess, err := s.readRecording(r, "export")
	if err != nil {
		return err
	}
	meta, err := json.Marshal(toSessionJSON(sess))
	if err != nil {
		return fmt.Errorf("export %s: %w", sess.ID, err)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.jsonl"`, sess.ID))
	w.WriteHeader(http.StatusOK)
	enc := verify.NewEncoder(w)
	if err := enc.Header(verify.Header{Session: meta, SigningKeys: verify.KeysJSON(s.publicKeys()), ExportedAt: time.Now().UTC()}); err != nil {
		return nil // the client went away
	}
	flush := http.NewResponseController(w)
	n := 0
	err = s.Store.Events(r.Context(), sess.ID, 0, func(e *event.Event) error {
		n++
		if n%256 == 0 {
			flush.Flush()
		}
		return enc.Event(e)
	})
	if err != nil && r.Context().Err() == nil {
		s.log().Error("api: export stopped", "session", sess.ID, "after_events", n, "err", err)
	}
	return nil
}
