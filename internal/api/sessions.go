package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// Session is a session as the API shows it (and the CLI reads it). Every field is always
// present.
type Session struct {
	ID         string     `json:"id"`
	User       string     `json:"user"`
	Target     string     `json:"target"`
	Type       string     `json:"type"`
	ClientAddr string     `json:"client_addr"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	EndReason  string     `json:"end_reason"`
	Events     uint64     `json:"events"`
	Head       string     `json:"head"`
	Status     string     `json:"status"` // active | ended
	Hold       bool       `json:"hold"`   // legal hold: never expires while set
	// DroppedEvents counts the events a best-effort recording could not keep, kept up to date
	// while the session runs (about once a second) and final once it ended.
	DroppedEvents uint64 `json:"dropped_events"`
}

func toSessionJSON(s store.Session) Session {
	j := Session{ID: s.ID, User: s.User, Target: s.Target, Type: s.Type, ClientAddr: s.ClientAddr,
		StartedAt: s.StartedAt.UTC(), EndReason: s.EndReason, Events: s.Events, Head: s.Head, Status: "active", Hold: s.Hold,
		DroppedEvents: s.DroppedEvents}
	if s.EndedAt != nil {
		t := s.EndedAt.UTC()
		j.EndedAt = &t
		j.Status = "ended"
	}
	return j
}

// parseFilter reads the sessions list's query parameters.
func parseFilter(q url.Values) (store.Filter, error) {
	var f store.Filter
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "bad_request", "%s: %q is not an RFC 3339 time (like 2026-01-02T15:04:05Z)", p.name, v)
		}
		*p.dst = t
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, errorf(http.StatusBadRequest, "bad_request", "from (%s) must be before to (%s)", q.Get("from"), q.Get("to"))
	}
	f.User, f.Target, f.Type = q.Get("user"), q.Get("target"), q.Get("type")
	switch f.Status = q.Get("status"); f.Status {
	case "", store.StatusActive, store.StatusEnded:
	default:
		return f, errorf(http.StatusBadRequest, "bad_request", "status: %q is not active or ended", f.Status)
	}
	f.Text = q.Get("q")
	if len(f.Text) > 200 {
		return f, errorf(http.StatusBadRequest, "bad_request", "q: longer than 200 bytes")
	}
	if v := q.Get("before"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "bad_request", "before: %q is not a cursor from a previous page's \"next\"", v)
		}
		f.Before = c
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, errorf(http.StatusBadRequest, "bad_request", "limit: %q is not a non-negative integer", v)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		return err
	}
	id := auth.FromContext(r.Context())
	if !id.Role.CanReadAll() {
		if f.User != "" && f.User != id.User {
			// Asking for someone else's sessions is not an error; there are just none to see.
			return writeJSON(w, http.StatusOK, map[string]any{"sessions": []Session{}})
		}
		f.User = id.User
	}
	if f.Text != "" && f.User != id.User {
		// A text search reads the statements and commands of other people's recordings: it is
		// a read of recordings, audited before it runs like the reads of one.
		detail := map[string]string{"route": "search", "q": f.Text, "role": string(id.Role)}
		for k, v := range map[string]string{"user": f.User, "target": f.Target, "type": f.Type} {
			if v != "" {
				detail[k] = v
			}
		}
		if err := s.audit(r, audit.Entry{Action: audit.ActionRecordingRead, Actor: id.User, Outcome: audit.OK, Detail: detail}); err != nil {
			return err
		}
	}
	list, err := s.Store.Sessions(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	out := make([]Session, 0, len(list))
	for _, x := range list {
		if id.Role.CanReadAll() || x.User == id.User {
			out = append(out, toSessionJSON(x))
		}
	}
	resp := map[string]any{"sessions": out}
	if f.Limit > 0 && len(list) == f.Limit {
		// A full page: the next one starts after its last session.
		last := list[len(list)-1]
		resp["next"] = formatCursor(store.Cursor{StartedAt: last.StartedAt, ID: last.ID})
	}
	return writeJSON(w, http.StatusOK, resp)
}

// A page cursor is the last session's start (Unix nanoseconds) and id: "1700000000000000000_ID".
func formatCursor(c store.Cursor) string {
	return strconv.FormatInt(c.StartedAt.UnixNano(), 10) + "_" + c.ID
}

func parseCursor(v string) (store.Cursor, error) {
	ns, id, ok := strings.Cut(v, "_")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || store.CheckSessionID(id) != nil {
		return store.Cursor{}, errors.New("bad cursor")
	}
	return store.Cursor{StartedAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// visibleSession returns the session named in the path if the caller may see it. A session that
// exists but is not the caller's is reported as absent, so ids cannot be probed.
func (s *Server) visibleSession(ctx context.Context, idStr string) (store.Session, error) {
	sess, err := s.Store.Session(ctx, idStr)
	if errors.Is(err, store.ErrNotFound) {
		return sess, errorf(http.StatusNotFound, "not_found", "no session %q", idStr)
	}
	if err != nil {
		return sess, fmt.Errorf("get session %s: %w", idStr, err)
	}
	id := auth.FromContext(ctx)
	if !id.Role.CanReadAll() && sess.User != id.User {
		return sess, errorf(http.StatusNotFound, "not_found", "no session %q", idStr)
	}
	return sess, nil
}

// readRecording is visibleSession for the routes that read a recording (events, verify,
// export): a read by someone other than the recording's owner is audited before anything is
// read, and so is a refused one. route names the route in the entry.
func (s *Server) readRecording(r *http.Request, route string) (store.Session, error) {
	sess, err := s.visibleSession(r.Context(), r.PathValue("id"))
	id := auth.FromContext(r.Context())
	if err != nil {
		var e *Error
		if sess.ID != "" && errors.As(err, &e) && e.Status == http.StatusNotFound {
			// The session exists but is not the caller's: refused whatever the audit log says.
			s.audit(r, audit.Entry{Action: audit.ActionRecordingRead, Actor: id.User, Outcome: audit.Denied,
				Subject: sess.ID, Detail: map[string]string{"route": route, "owner": sess.User}})
		}
		return sess, err
	}
	if sess.User != id.User {
		err = s.audit(r, audit.Entry{Action: audit.ActionRecordingRead, Actor: id.User, Outcome: audit.OK,
			Subject: sess.ID, Detail: map[string]string{"route": route, "owner": sess.User, "role": string(id.Role)}})
	}
	return sess, err
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.visibleSession(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"session": toSessionJSON(sess)})
}

// eventJSON is one event as the API shows it.
type eventJSON struct {
	Seq      uint64          `json:"seq"`
	Type     event.Type      `json:"type"`
	OffsetNS int64           `json:"offset_ns"`
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data"`
	Prev     string          `json:"prev"`
	Hash     string          `json:"hash"`
	// Rows is set on rows events: one array of values per row (see renderValue).
	Rows      []json.RawMessage `json:"rows,omitempty"`
	RowsError string            `json:"rows_error,omitempty"`
	// RevealedRows is set on rows events of a ?reveal=true read whose values were masked: the
	// originals, rendered like Rows. RevealError says why they could not be.
	RevealedRows []json.RawMessage `json:"revealed_rows,omitempty"`
	RevealError  string            `json:"reveal_error,omitempty"`
	// Text or Base64 carries Raw of copy.in / copy.out and terminal.output / terminal.input events.
	Text   *string `json:"text,omitempty"`
	Base64 *string `json:"base64,omitempty"`
	// On a ?reveal=true read, an error, notice or notification event whose content was masked
	// gets RevealedData (its data as the target sent it), and a copy.out event RevealedText or
	// RevealedBase64 (the bytes as the target sent them).
	RevealedData   json.RawMessage `json:"revealed_data,omitempty"`
	RevealedText   *string         `json:"revealed_text,omitempty"`
	RevealedBase64 *string         `json:"revealed_base64,omitempty"`
}

var nullJSON = json.RawMessage("null")

// toEventJSON renders e; rr has seen the session's columns events before it. Data is e's (valid
// only as long as e is).
func toEventJSON(rr *rowRenderer, e *event.Event) eventJSON {
	ej := eventJSON{Seq: e.Seq, Type: e.Type, OffsetNS: int64(e.Offset), Time: e.Time.UTC(),
		Data: nullJSON, Prev: hex.EncodeToString(e.Prev[:]), Hash: hex.EncodeToString(e.Hash[:])}
	if len(e.Data) > 0 {
		if json.Valid(e.Data) {
			ej.Data = e.Data
		} else {
			b, _ := json.Marshal(string(e.Data))
			ej.Data = b
		}
	}
	switch e.Type {
	case event.Rows:
		var err error
		ej.Rows, err = rr.render(e.Raw)
		if err != nil {
			ej.RowsError = err.Error()
		}
		if ej.Rows == nil {
			ej.Rows = []json.RawMessage{}
		}
	case event.CopyIn, event.CopyOut, event.TerminalOutput, event.TerminalInput, event.ForwardBytes:
		ej.Text, ej.Base64 = textOrBase64(e.Raw)
	case event.KubeRequest, event.KubeResponse, event.KubeWatchEvent, event.KubeStream: // bodies
		ej.Text, ej.Base64 = textOrBase64(e.Raw)
	}
	return ej
}

// sessionEvents streams a session's events: each is encoded as it is read from the store, so
// memory stays flat whatever the recording's size. Once the answer has started, an error from
// the store is reported in a top-level "error" field after the events delivered so far.
func (s *Server) sessionEvents(w http.ResponseWriter, r *http.Request) error {
	reveal := false
	if v := r.URL.Query().Get("reveal"); v != "" {
		var err error
		if reveal, err = strconv.ParseBool(v); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "reveal: %q is not true or false", v)
		}
	}
	if reveal {
		if err := s.checkReveal(r); err != nil {
			return err
		}
	}
	sess, err := s.readRecording(r, "events")
	if err != nil {
		return err
	}
	if reveal {
		id := auth.FromContext(r.Context())
		if err := s.audit(r, audit.Entry{Action: audit.ActionRecordingReveal, Actor: id.User, Outcome: audit.OK,
			Subject: sess.ID, Detail: map[string]string{"route": "events", "owner": sess.User, "role": string(id.Role)}}); err != nil {
			return err
		}
	}
	// types=a,b: only events of these types are sent (the terminal player needs a few of many).
	var types map[event.Type]bool
	if v := r.URL.Query().Get("types"); v != "" {
		types = map[event.Type]bool{}
		for _, t := range strings.Split(v, ",") {
			types[event.Type(t)] = true
		}
	}
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		after, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "after: %q is not a sequence number", v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var (
		rr    rowRenderer
		n     int
		werr  error // a write to the client failed: stop reading
		ej    eventJSON
		flush = http.NewResponseController(w)
	)
	io := func(s string) {
		if werr == nil {
			_, werr = w.Write([]byte(s))
		}
	}
	emit := func(ej *eventJSON) {
		if types != nil && !types[ej.Type] {
			return
		}
		if n > 0 {
			io(",")
		}
		n++
		if werr == nil {
			werr = enc.Encode(ej)
		}
		if n%256 == 0 {
			flush.Flush()
		}
	}
	// With reveal, a rows event (or an error, notice, notification, copy.out or terminal.input)
	// is held until the event after it (and any checkpoints between) shows whether an original
	// belongs to it.
	var held []eventJSON
	flushHeld := func() {
		for i := range held {
			emit(&held[i])
		}
		clear(held)
		held = held[:0]
	}
	io(`{"events":[`)
	// Read from the start even when after > 0: rows events need the formats of the latest
	// columns event, which may precede `after`. Events before it are not rendered.
	err = s.Store.Events(r.Context(), sess.ID, 0, func(e *event.Event) error {
		if e.Type == event.Columns {
			rr.setColumns(e.Data)
		}
		if e.Seq <= after {
			return nil
		}
		ej = toEventJSON(&rr, e)
		if reveal {
			switch {
			case e.Type == event.Rows, e.Type == event.Error, e.Type == event.Notice,
				e.Type == event.Notification, e.Type == event.CopyOut, e.Type == event.TerminalInput:
				flushHeld()
				ej.Data = append(json.RawMessage(nil), ej.Data...) // e's buffers are reused
				held = append(held, ej)
				return werr
			case e.Type == event.Checkpoint && len(held) > 0:
				ej.Data = append(json.RawMessage(nil), ej.Data...)
				held = append(held, ej)
				return werr
			case e.Type == event.RowsOriginal:
				if len(held) > 0 && held[0].Type == event.Rows {
					held[0].RevealedRows, held[0].RevealError = s.reveal(&rr, sess.ID, e)
				} else {
					ej.RevealError = "no rows event precedes it"
				}
			case e.Type == event.Original:
				s.revealOriginal(sess.ID, e, held, &ej)
			}
			flushHeld()
		}
		emit(&ej)
		return werr
	})
	flushHeld()
	io("]")
	if err != nil && werr == nil {
		s.log().Error("api: reading session events", "session", sess.ID, "after_events", n, "err", err)
		s.Metrics.Error("store")
		msg, _ := json.Marshal(fmt.Sprintf("reading recording %s stopped after %d events: %v", sess.ID, n, err))
		io(`,"error":` + string(msg))
	}
	io("}\n")
	if werr != nil {
		s.log().Debug("api: client went away during events", "session", sess.ID, "err", werr)
	}
	return nil
}

// checkReveal refuses, and audits, a reveal by anyone but an auditor or admin.
func (s *Server) checkReveal(r *http.Request) error {
	id := auth.FromContext(r.Context())
	if id.Role.CanReadAll() {
		return nil
	}
	s.audit(r, audit.Entry{Action: audit.ActionRecordingReveal, Actor: id.User, Outcome: audit.Denied,
		Subject: r.PathValue("id"), Detail: map[string]string{"route": "events", "role": string(id.Role)}})
	return errorf(http.StatusForbidden, "forbidden", "only auditors and admins may reveal masked values (you are %s with role %s)", id.User, id.Role)
}

// reveal decrypts a rows.original event and renders its rows like a rows event's.
func (s *Server) reveal(rr *rowRenderer, session string, e *event.Event) ([]json.RawMessage, string) {
	var d event.RowsOriginalData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, "rows.original: " + err.Error()
	}
	plain, err := s.open(session, d.KeyID, d.Nonce, e.Raw)
	if err != nil {
		return nil, err.Error()
	}
	rows, err := rr.render(plain)
	clear(plain)
	if err != nil {
		return rows, err.Error()
	}
	if rows == nil {
		rows = []json.RawMessage{}
	}
	return rows, ""
}

// revealOriginal decrypts an original event into the event it follows (held[0]), or says in ej
// why it cannot.
func (s *Server) revealOriginal(session string, e *event.Event, held []eventJSON, ej *eventJSON) {
	var d event.OriginalData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		ej.RevealError = "original: " + err.Error()
		return
	}
	if len(held) == 0 || held[0].Type != d.Of {
		ej.RevealError = fmt.Sprintf("no %s event precedes it", d.Of)
		return
	}
	plain, err := s.open(session, d.KeyID, d.Nonce, e.Raw)
	if err != nil {
		held[0].RevealError = err.Error()
		return
	}
	switch {
	case d.Of == event.CopyOut, d.Of == event.TerminalInput:
		held[0].RevealedText, held[0].RevealedBase64 = textOrBase64(plain)
	case json.Valid(plain):
		held[0].RevealedData = plain
	default:
		held[0].RevealError = "original: not JSON"
	}
}

// open decrypts an original sealed with the recording key, the session id as additional data.
func (s *Server) open(session, keyID, nonce string, ct []byte) ([]byte, error) {
	if s.Sealer == nil {
		return nil, errors.New("this gateway has no recording key")
	}
	n, err := base64.StdEncoding.DecodeString(nonce)
	if err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return s.Sealer.Open(keyID, n, ct, []byte(session))
}

func textOrBase64(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		t := string(b)
		return &t, nil
	}
	t := base64.StdEncoding.EncodeToString(b)
	return nil, &t
}

// sessionsOther answers every method other than GET on the sessions tree. Every refused attempt
// to change a recording is audited (the answer is 405 whatever the audit log says).
func (s *Server) sessionsOther(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return errorf(http.StatusNotFound, "not_found", "no API route %s %s", r.Method, r.URL.Path)
	case http.MethodOptions:
		w.Header().Set("Allow", "GET, HEAD")
		return errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path)
	}
	user, detail := "", map[string]string{"method": r.Method, "path": r.URL.Path}
	if id, err := s.authenticate(r); err == nil {
		user = id.User
	} else {
		detail["authenticated"] = "false"
	}
	// The session id, when the path names one: /api/v1/sessions/{id}[/...] (once clean).
	subject, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(path.Clean(r.URL.Path), "/api/v1/sessions"), "/"), "/")
	s.log().Warn("api: refused attempt to modify a recording", "method", r.Method, "path", r.URL.Path,
		"user", user, "remote", r.RemoteAddr)
	s.audit(r, audit.Entry{Action: audit.ActionRecordingModify, Actor: user, Outcome: audit.Denied, Subject: subject, Detail: detail})
	w.Header().Set("Allow", "GET, HEAD")
	switch r.Method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		return errorf(http.StatusMethodNotAllowed, "immutable", "recordings cannot be modified or deleted")
	}
	return errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path)
}

// holdRequest is the body of POST /api/v1/sessions/{id}/hold.
type holdRequest struct {
	Hold   *bool  `json:"hold"`
	Reason string `json:"reason"`
}

// holdSession puts a session on legal hold or releases it (admins only). Like a target change,
// it is audited before it is made, and a refusal is audited too.
func (s *Server) holdSession(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	sid := r.PathValue("id")
	if id.Role != auth.RoleAdmin {
		s.audit(r, audit.Entry{Action: audit.ActionRecordingHold, Actor: id.User, Outcome: audit.Denied, Subject: sid,
			Detail: map[string]string{"role": string(id.Role)}})
		return errorf(http.StatusForbidden, "forbidden", "only admins may set legal holds (you are %s with role %s)", id.User, id.Role)
	}
	var req holdRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Hold == nil {
		return errorf(http.StatusBadRequest, "bad_request", `"hold" (true or false) is required`)
	}
	if len(req.Reason) > 1000 {
		return errorf(http.StatusBadRequest, "bad_request", "reason is longer than 1000 bytes")
	}
	if _, err := s.Store.Session(r.Context(), sid); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "not_found", "no session %q", sid)
		}
		return err
	}
	entry := audit.Entry{Action: audit.ActionRecordingHold, Actor: id.User, Outcome: audit.OK, Subject: sid,
		Detail: map[string]string{"hold": strconv.FormatBool(*req.Hold), "reason": req.Reason}}
	if err := s.audit(r, entry); err != nil {
		return err
	}
	if err := s.Store.SetHold(r.Context(), sid, *req.Hold); err != nil {
		entry.Outcome, entry.Detail["error"] = audit.Failed, err.Error()
		s.audit(r, entry)
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "not_found", "no session %q", sid)
		}
		return fmt.Errorf("set hold of session %s: %w", sid, err)
	}
	s.log().Info("api: legal hold changed", "session", sid, "hold", *req.Hold, "by", id.User)
	sess, err := s.Store.Session(r.Context(), sid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"session": toSessionJSON(sess)})
}
