package api

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/verify"
)

// verifySession recomputes a session's chain and checks its checkpoints with the gateway's
// public keys. Visibility is that of the session's events.
//
// It reads the recording in the store's verification mode (store.RecordReader) when the store
// has one: every record reaches the verifier, damaged or not, so that each problem gets its own
// typed finding, as offline verification of an export gives. Only bytes the store cannot frame
// as a record at all end the read, as unreadable.
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
	if rr, ok := s.Store.(store.RecordReader); ok {
		v.NoPrev = true
		err = rr.Records(r.Context(), sess.ID, func(rec *store.Record) error {
			switch {
			case rec.Event == nil:
				v.Undecodable(rec.Hash, rec.Damage)
			case rec.Damage != "":
				v.AddDamaged(rec.Event, rec.Damage)
			default:
				v.Add(rec.Event)
			}
			return nil
		})
	} else {
		err = s.Store.Events(r.Context(), sess.ID, 0, func(e *event.Event) error {
			v.Add(e)
			return nil
		})
	}
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
// writes and `airlock verify --file` checks offline. The store's own checks apply: a record
// that is not what was written stops the read. The status line has gone out by then, so the
// response is aborted (the connection closed without the end of the chunked body, or the
// HTTP/2 stream reset): the client sees a failed download, never a complete-looking export of
// part of the recording.
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
	if err != nil {
		if r.Context().Err() == nil {
			s.log().Error("api: export stopped; response aborted", "session", sess.ID, "after_events", n, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}
