package verify

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
)

// The JSON Lines export (`airlock export --format jsonl`, GET /api/v1/sessions/{id}/export) is a
// header line followed by one line per event, in sequence order. Every line carries what the
// canonical encoding needs, so the chain recomputes from the file alone:
//
//	{"format":"airlock-export","version":1,"session":{...},"signing_keys":[...],"exported_at":"..."}
//	{"session":"ID","seq":1,"type":"session.start","offset_ns":0,"time":"...","data":{...},"raw":"base64","prev":"hex","hash":"hex"}
//
// data is the event's JSON payload byte for byte; an event whose payload is not compact JSON
// carries it as data_base64 instead. raw is omitted when empty. The header's signing keys are
// a convenience: a verifier must take the keys it trusts from elsewhere (--public-key), since
// whoever can edit the file can replace them too.

// ExportFormat and ExportVersion name the layout above.
const (
	ExportFormat  = "airlock-export"
	ExportVersion = 1
)

// Header is the first line of an export.
type Header struct {
	Format      string          `json:"format"`
	Version     int             `json:"version"`
	Session     json.RawMessage `json:"session"` // the session as GET /api/v1/sessions/{id} shows it
	SigningKeys []KeyJSON       `json:"signing_keys"`
	ExportedAt  time.Time       `json:"exported_at"`
}

// SessionID returns the header's session id.
func (h *Header) SessionID() string {
	var s struct {
		ID string `json:"id"`
	}
	json.Unmarshal(h.Session, &s)
	return s.ID
}

// CheckHeader compares what the header says about the session with the chain, after the last
// Add. The header is outside the chain, so its claims count only where the chain confirms them:
//   - id, user, target, type (session.start's target_type) and client_addr must equal what
//     session.start recorded (a field session.start left empty is not compared);
//   - started_at must not be after session.start's time (the index entry is made just before
//     the first event; how long before is not recorded, so only this bound is checked);
//   - status and ended_at: "ended" with an ended_at exactly when the chain has a session.end;
//     ended_at must equal session.end's time (to the microsecond a store may round to), or, for
//     a session ended by crash recovery ("interrupted"), not be after it;
//   - end_reason must be session.end's reason (the index says "error" for some reasons the
//     event spells out), events and head must be the chain's last event (see ExpectEnd).
//
// hold, exported_at and signing_keys are not covered: nothing in the chain records them. A
// verifier must not trust them.
func (v *Verifier) CheckHeader(h *Header) {
	var s struct {
		ID         string     `json:"id"`
		User       string     `json:"user"`
		Target     string     `json:"target"`
		Type       string     `json:"type"`
		ClientAddr string     `json:"client_addr"`
		StartedAt  time.Time  `json:"started_at"`
		EndedAt    *time.Time `json:"ended_at"`
		Status     string     `json:"status"`
		EndReason  string     `json:"end_reason"`
		Events     uint64     `json:"events"`
		Head       string     `json:"head"`
	}
	if err := json.Unmarshal(h.Session, &s); err != nil {
		v.add(Altered, 0, "the export header's session does not decode: %v", err)
		return
	}
	if s.ID != v.Session {
		v.add(Altered, 0, "the export header says session %q; the events are session %q's", s.ID, v.Session)
	}
	if st := v.start; st != nil {
		differs := func(header, chain string) bool { return chain != "" && header != chain }
		if s.User != st.User || s.Target != st.Target || differs(s.Type, st.TargetType) || differs(s.ClientAddr, st.ClientAddr) {
			v.add(Altered, 1, "the export header says user %q, target %q, type %q, client %q; session.start says %q, %q, %q, %q",
				s.User, s.Target, s.Type, s.ClientAddr, st.User, st.Target, st.TargetType, st.ClientAddr)
		}
		if s.StartedAt.Sub(v.startAt) >= time.Microsecond {
			v.add(Altered, 1, "the export header says the session started at %s, after its session.start event (%s)",
				s.StartedAt.Format(time.RFC3339Nano), v.startAt.Format(time.RFC3339Nano))
		}
	}
	ended := s.EndedAt != nil || s.Status == "ended"
	switch {
	case v.end == nil && ended:
		// The chain has no session.end: Finish reports it as truncated.
	case v.end != nil && !ended:
		v.add(Altered, 0, "the export header says the session is still running (status %q); the chain ends with session.end", s.Status)
	case v.end != nil && (s.EndedAt == nil || s.Status != "ended"):
		v.add(Altered, 0, "the export header says status %q, ended_at %v: not a valid end", s.Status, s.EndedAt)
	}
	if s.EndedAt == nil {
		return
	}
	if e := v.end; e != nil {
		d := s.EndedAt.Sub(v.endAt)
		if (e.Reason == "interrupted" && d >= time.Microsecond) || (e.Reason != "interrupted" && d.Abs() >= time.Microsecond) {
			v.add(Altered, 0, "the export header says the session ended at %s; session.end was recorded at %s",
				s.EndedAt.Format(time.RFC3339Nano), v.endAt.Format(time.RFC3339Nano))
		}
		if s.EndReason != e.Reason && !(s.EndReason == "error" && e.Reason != "") {
			v.add(Altered, 0, "the export header says the session ended %q; session.end says %q", s.EndReason, e.Reason)
		}
	}
	if s.Head != "" {
		v.ExpectEnd(s.Events, s.Head)
	}
}

// KeyJSON is a public key as GET /api/v1/signing-keys and the export header show it.
type KeyJSON struct {
	ID        string    `json:"id"`
	Algorithm string    `json:"algorithm"`
	PublicKey string    `json:"public_key"` // base64 of the raw 32 bytes
	CreatedAt time.Time `json:"created_at"`
	Current   bool      `json:"current"`
}

// Line is one event of an export.
type Line struct {
	Session    string          `json:"session"`
	Seq        uint64          `json:"seq"`
	Type       event.Type      `json:"type"`
	OffsetNS   int64           `json:"offset_ns"`
	Time       time.Time       `json:"time"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
	Raw        string          `json:"raw,omitempty"`
	Prev       string          `json:"prev"`
	Hash       string          `json:"hash"`
}

// Encoder writes an export.
type Encoder struct {
	enc *json.Encoder
	buf bytes.Buffer
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	e := &Encoder{enc: json.NewEncoder(w)}
	e.enc.SetEscapeHTML(false) // keep payloads byte for byte
	return e
}

// Header writes the header line.
func (x *Encoder) Header(h Header) error {
	h.Format, h.Version = ExportFormat, ExportVersion
	if h.SigningKeys == nil {
		h.SigningKeys = []KeyJSON{}
	}
	return x.enc.Encode(h)
}

// Event writes one event line.
func (x *Encoder) Event(e *event.Event) error {
	l := Line{Session: e.Session, Seq: e.Seq, Type: e.Type, OffsetNS: int64(e.Offset), Time: e.Time.UTC(),
		Prev: hex.EncodeToString(e.Prev[:]), Hash: hex.EncodeToString(e.Hash[:])}
	if len(e.Data) > 0 {
		x.buf.Reset()
		if json.Compact(&x.buf, e.Data) == nil && bytes.Equal(x.buf.Bytes(), e.Data) {
			l.Data = e.Data
		} else {
			l.DataBase64 = base64.StdEncoding.EncodeToString(e.Data)
		}
	}
	if len(e.Raw) > 0 {
		l.Raw = base64.StdEncoding.EncodeToString(e.Raw)
	}
	return x.enc.Encode(&l)
}

// Event returns the event a line describes.
func (l *Line) Event() (*event.Event, error) {
	e := &event.Event{Session: l.Session, Seq: l.Seq, Type: l.Type, Offset: time.Duration(l.OffsetNS), Time: l.Time.UTC(), Data: []byte(l.Data)}
	var err error
	if l.DataBase64 != "" {
		if e.Data, err = base64.StdEncoding.DecodeString(l.DataBase64); err != nil {
			return nil, fmt.Errorf("data_base64: %w", err)
		}
	}
	if len(e.Data) == 0 {
		e.Data = nil
	}
	if l.Raw != "" {
		if e.Raw, err = base64.StdEncoding.DecodeString(l.Raw); err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
	}
	for _, h := range []struct {
		name string
		src  string
		dst  *[32]byte
	}{{"prev", l.Prev, &e.Prev}, {"hash", l.Hash, &e.Hash}} {
		b, err := hex.DecodeString(h.src)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%s %q is not a SHA-256 hash in hex", h.name, h.src)
		}
		copy(h.dst[:], b)
	}
	return e, nil
}

// ReadExport reads an export: the header (passed to onHeader, when not nil, before any event),
// then fn for each event line in file order. It stops at the first line that does not parse,
// with an error naming it.
func ReadExport(r io.Reader, onHeader func(*Header) error, fn func(*event.Event) error) (Header, error) {
	var h Header
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
			if n == 1 {
				if jerr := json.Unmarshal(line, &h); jerr != nil || h.Format != ExportFormat {
					return h, fmt.Errorf("line 1 is not an airlock export header (%v)", jerr)
				}
				if h.Version != ExportVersion {
					return h, fmt.Errorf("export version %d is not supported (want %d)", h.Version, ExportVersion)
				}
				if onHeader != nil {
					if herr := onHeader(&h); herr != nil {
						return h, herr
					}
				}
			} else {
				var l Line
				if jerr := json.Unmarshal(line, &l); jerr != nil {
					return h, fmt.Errorf("line %d: %w", n, jerr)
				}
				e, eerr := l.Event()
				if eerr != nil {
					return h, fmt.Errorf("line %d: %w", n, eerr)
				}
				if ferr := fn(e); ferr != nil {
					return h, ferr
				}
			}
		}
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return h, errors.New("empty export")
			}
			return h, nil
		}
		if err != nil {
			return h, err
		}
	}
}

// KeysJSON renders public keys for the API and the export header.
func KeysJSON(keys []signing.PublicKey) []KeyJSON {
	out := make([]KeyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyJSON{ID: k.ID, Algorithm: signing.Algorithm, PublicKey: base64.StdEncoding.EncodeToString(k.Key),
			CreatedAt: k.CreatedAt.UTC(), Current: k.Current})
	}
	return out
}
