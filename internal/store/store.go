package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/target"
)

// Errors every backend returns (wrapped) so callers can tell cases apart. A missing target is
// target.ErrUnknown.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrClosed   = errors.New("store closed")
	// ErrNotSupported is returned by a backend that does not implement an operation yet.
	ErrNotSupported = errors.New("not supported by this store yet")
)

// Session is the index entry of one recording: what the sessions list shows. The recording
// itself is the session's events.
type Session struct {
	ID         string     `json:"id"`
	User       string     `json:"user"`
	Target     string     `json:"target"`
	Type       string     `json:"type"` // engine name: postgres, mysql, ssh, ...
	ClientAddr string     `json:"client_addr"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"` // nil while the session runs
	// EndReason is event.SessionEndData.Reason, or "incomplete" when the recorder could not
	// record the session's end (recorder.EndIncomplete).
	EndReason string `json:"end_reason,omitempty"`
	Events    uint64 `json:"events"` // number of events, known once ended
	// Head is the hash of the last event once ended (hex); the chain's anchor.
	Head string `json:"head,omitempty"`
	// Hold is the legal hold: a held session never expires, whatever its target's retention.
	Hold bool `json:"hold"`
	// DroppedEvents counts the events a best-effort recording could not keep. The recorder
	// raises it while the session runs (at most about once a second, see recorder.DropCounter)
	// and sets it at the end; it never goes down. Always 0 for a strict recording.
	DroppedEvents uint64 `json:"dropped_events"`
}

// SessionEnd finalizes a session's index entry.
type SessionEnd struct {
	EndedAt time.Time
	Reason  string
	Events  uint64
	Head    [32]byte
	// Dropped is the session's final count of events not kept (Session.DroppedEvents); a
	// count the index already holds is never lowered.
	Dropped uint64
}

// Filter selects sessions. Zero fields match everything. From/To select sessions whose lifetime
// overlaps [From, To): started before To and (still running or ended at or after From).
type Filter struct {
	From, To time.Time
	User     string
	Target   string
	Type     string
	// Status is "active" (no end recorded yet), "ended", or "" for both.
	Status string
	// Text matches sessions that ran a statement or command containing it, case-insensitively
	// (see SearchText for what is searched).
	Text string
	// Before pages newest first: only sessions that sort after it (started earlier, or at the
	// same time with a smaller id). The zero Cursor starts at the newest.
	Before Cursor
	Limit  int // 0 means the backend default (1000)
}

// Cursor is a position in the newest-first order of sessions: the last session of a page.
type Cursor struct {
	StartedAt time.Time
	ID        string
}

// IsZero reports whether c is the start of the list.
func (c Cursor) IsZero() bool { return c.ID == "" && c.StartedAt.IsZero() }

// Session statuses of Filter.Status.
const (
	StatusActive = "active"
	StatusEnded  = "ended"
)

// MaxSearchText bounds the text a backend indexes per session for Filter.Text: enough for the
// statements of an ordinary session; a session that ran more is found by its first ones.
const MaxSearchText = 64 << 10

// SearchText returns what Filter.Text searches in an event: the text of a statement (query),
// the command line of a program started on a channel (exec), and what a user typed in a
// terminal (terminal.input; withheld input is not recorded, so never searched). Other events
// give nothing.
func SearchText(e *event.Event) string {
	if !Searchable(e.Type) {
		return ""
	}
	switch e.Type {
	case event.Query:
		var d struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(e.Data, &d) == nil {
			return d.Text
		}
	case event.Exec:
		var d struct {
			Command string `json:"command"`
		}
		if json.Unmarshal(e.Data, &d) == nil {
			return d.Command
		}
	case event.TerminalInput:
		if utf8.Valid(e.Raw) {
			return string(e.Raw)
		}
	}
	return ""
}

// Searchable reports whether events of type t have text SearchText returns.
func Searchable(t event.Type) bool {
	return t == event.Query || t == event.Exec || t == event.TerminalInput
}

// Recordings is the append-only recording store. There is deliberately no way to change an
// event or a session; the only way to remove one is Expire, which the retention job calls.
type Recordings interface {
	// Create registers a new session and returns the writer for its events. The session's ID
	// must be unique.
	Create(ctx context.Context, s Session) (Writer, error)
	// Sessions lists sessions matching f, newest first.
	Sessions(ctx context.Context, f Filter) ([]Session, error)
	// Session returns one session's index entry.
	Session(ctx context.Context, id string) (Session, error)
	// Events calls fn for each event of session id in sequence order, starting after seq
	// `after` (0 for all). The event passed to fn is valid only during the call.
	Events(ctx context.Context, id string, after uint64, fn func(*event.Event) error) error
	// SetHold puts session id on legal hold or releases it (ErrNotFound for an unknown id).
	SetHold(ctx context.Context, id string, hold bool) error
	// Expire removes the sessions of target that ended before cutoff and are not on hold: their
	// index entries and their events. Running sessions never expire. It returns the ids removed.
	Expire(ctx context.Context, target string, cutoff time.Time) (expired []string, err error)
}

// Record is one stored event of a recording as RecordReader reads it.
type Record struct {
	// Event is the event as stored, nil when the record does not decode. Its Prev is not set:
	// no store keeps it (it is the hash of the event before).
	Event *event.Event
	// Hash is the hash stored with the record (Event.Hash when it decodes).
	Hash [32]byte
	// Damage says what the store found wrong with the record itself (a checksum that does not
	// match its bytes, an encoding that does not decode); "" when nothing. The chain is not
	// checked: that is the verifier's job.
	Damage string
}

// RecordReader is the verification mode of reading a recording: Events stops at the first
// event that is not what was written, while a verifier must see every record, damaged or not,
// to say what is wrong with each (internal/verify).
type RecordReader interface {
	// Records calls fn for every record of session id in the order the store keeps them,
	// checking nothing but that a record can be told apart from the next. A running session is
	// read up to what its writer completed. It returns an error when it cannot go on: bytes that
	// cannot be framed as a record (a recording cut inside one included), or a read error; the
	// records before were passed to fn. The Record and its Event are valid only during fn.
	Records(ctx context.Context, id string, fn func(*Record) error) error
}

// Writer appends one session's events. It is not safe for concurrent use; the recorder
// serializes a session's events.
type Writer interface {
	// Append writes events, already sealed in sequence, to the store. When it returns nil the
	// events survive a crash of the gateway process; whether they also survive a power loss
	// before the next Sync depends on the backend's fsync policy.
	Append(events ...*event.Event) error
	// Sync makes everything appended so far durable on stable storage.
	Sync() error
	// End finalizes the session's index entry and releases the writer.
	End(ctx context.Context, end SessionEnd) error
}

// Targets keeps targets registered through the API (targets from the config file are not
// stored).
type Targets interface {
	PutTarget(ctx context.Context, t target.Target) error // creates or replaces by name
	GetTarget(ctx context.Context, name string) (target.Target, error)
	ListTargets(ctx context.Context) ([]target.Target, error)
}

// KV holds small pieces of gateway state (the bootstrap admin's password hash, ...).
type KV interface {
	GetKV(ctx context.Context, key string) ([]byte, error) // ErrNotFound when absent
	PutKV(ctx context.Context, key string, value []byte) error
}

// Store is everything a backend provides.
type Store interface {
	Recordings
	Targets
	KV
	Close() error
}

// CheckNext reports whether e continues the chain of session id whose last event has sequence
// number seq and hash head: what every backend's Writer.Append checks before writing, so that
// a recording never gets a gap, a fork or another session's event.
func CheckNext(id string, seq uint64, head [32]byte, e *event.Event) error {
	switch {
	case e.Session != id:
		return fmt.Errorf("append to session %q: event of session %q", id, e.Session)
	case e.Seq != seq+1:
		return fmt.Errorf("append to session %q: event %d where %d was next", id, e.Seq, seq+1)
	case e.Prev != head:
		return fmt.Errorf("append to session %q: event %d does not chain to event %d", id, e.Seq, seq)
	case len(e.Type) > math.MaxUint16:
		return fmt.Errorf("append to session %q: event %d: type too long", id, e.Seq)
	case e.Seq > math.MaxInt64:
		return fmt.Errorf("append to session %q: sequence %d out of range", id, e.Seq)
	}
	return nil
}

// MaxSessionID is the longest session id any backend accepts.
const MaxSessionID = 128

// CheckSessionID accepts ids that every backend can keep, safe as file names: what uuid.NewV7
// produces and more, but no path separators, no leading dot or dash.
func CheckSessionID(id string) error {
	ok := id != "" && len(id) <= MaxSessionID && id[0] != '.' && id[0] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return fmt.Errorf("create session: invalid id %q (1-%d of [A-Za-z0-9._-])", id, MaxSessionID)
	}
	return nil
}
