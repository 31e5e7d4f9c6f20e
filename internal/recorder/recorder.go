// Package recorder turns what engines observe into a session's sealed, hash-chained events and
// writes them to the store before the engine forwards the bytes they describe.
package recorder

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// ErrUnavailable wraps every store failure: engines turn it into a protocol-native "recording
// unavailable" error and end the session (fail closed).
var ErrUnavailable = errors.New("recording unavailable")

// Recorder opens recordings.
type Recorder struct {
	Store   store.Recordings
	Metrics *metrics.Metrics
	Now     func() time.Time // time.Now when nil; must carry a monotonic reading
	// Signer signs checkpoints of the chain head. When nil no checkpoint is recorded (tests of
	// engines that do not care); the gateway always sets it.
	Signer Signer
	// CheckpointEvents: a checkpoint follows at most this many events after the previous one.
	// Default 1000.
	CheckpointEvents int
	// CheckpointInterval: a checkpoint follows the first event recorded at least this long
	// after the previous checkpoint (or the session start), and a timer signs the head of a
	// session that went idle: no event waits longer than this (plus the store's own delay) for
	// a signature. Default 5s.
	CheckpointInterval time.Duration
	// BestEffortBuffer bounds, in bytes of event data and raw bytes, the events a best-effort
	// session holds in memory that the store has not yet accepted. Default 8 MiB.
	BestEffortBuffer int
	// DrainTimeout is how long End of a best-effort session waits for a stalled store to take
	// what is buffered. Default 10s; after it a failing store's session counts what it did not
	// keep as dropped and its index entry ends as EndIncomplete (see bestEffort).
	DrainTimeout time.Duration

	live liveSessions // sessions that Terminate can end (see WithTerminate)
}

// DropCounter is the store capability that keeps a running session's count of dropped events
// in its index entry (store.Session.DroppedEvents), so that it shows while a best-effort session
// runs; filestore and postgres have it. Without it the count reaches the index only at the end.
type DropCounter interface {
	// SetDropped raises the count of the running session id to n; it never lowers it.
	SetDropped(ctx context.Context, id string, n uint64) error
}

// Signer is what the recorder needs of a signing key (signing.Keyring).
type Signer interface {
	KeyID() string
	Sign(msg []byte) []byte
}

func (r *Recorder) checkpointEvents() uint64 {
	if r.CheckpointEvents > 0 {
		return uint64(r.CheckpointEvents)
	}
	return 1000
}

func (r *Recorder) checkpointInterval() time.Duration {
	if r.CheckpointInterval > 0 {
		return r.CheckpointInterval
	}
	return 5 * time.Second
}

// Info describes a session being opened.
type Info struct {
	Protocol string // engine name
	Target   string
	User     string
	Client   string // client address
	// Mode is the target's recording mode: "" or "strict" (fail closed) or "best-effort".
	Mode  string
	Start event.SessionStartData
}

// Start creates the session in the store and durably records its session.start event.
func (r *Recorder) Start(ctx context.Context, info Info) (*Session, error) {
	now := r.now()
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	w, err := r.Store.Create(ctx, store.Session{
		ID: id.String(), User: info.User, Target: info.Target, Type: info.Protocol,
		ClientAddr: info.Client, StartedAt: now.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: create session: %v", ErrUnavailable, err)
	}
	// Offsets count from when the recording exists, so session.start sits at (about) zero.
	s := &Session{r: r, id: id.String(), protocol: info.Protocol, target: info.Target, w: w, start: r.now()}
	s.ckAt = s.start
	// No checkpoint timer until the session's mode is set: the timer acts by mode.
	s.ckArmed = true
	// session.start is written synchronously in either mode: a session the store cannot even
	// create is refused, best-effort or not.
	s.Record(event.SessionStart, info.Start, nil)
	if err := s.Commit(); err != nil {
		s.mu.Lock()
		s.ended = true
		s.stopCheckpointTimer()
		s.mu.Unlock()
		w.End(ctx, store.SessionEnd{EndedAt: r.now().UTC(), Reason: "error"})
		return nil, err
	}
	if info.Mode == target.RecordingBestEffort {
		s.startBestEffort()
	}
	s.mu.Lock()
	s.ckArmed = false
	s.armCheckpointLocked() // for session.start
	s.mu.Unlock()
	r.live.add(ctx, s.id)
	if m := r.Metrics; m != nil {
		m.SessionsOpen.WithLabelValues(info.Protocol, info.Target).Inc()
		m.SessionsTotal.WithLabelValues(info.Protocol, info.Target).Inc()
	}
	return s, nil
}

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Session is one recording in progress. Its methods are safe for concurrent use: an engine's
// two relay directions record into the same chain.
type Session struct {
	r        *Recorder
	id       string
	protocol string
	target   string
	w        store.Writer
	start    time.Time

	mu      sync.Mutex
	seq     uint64
	prev    [32]byte
	pending []*event.Event
	scratch []byte
	err     error // sticky: once the store failed, every Commit fails
	ended   bool

	ckSeq     uint64    // seq of the last checkpoint event
	ckAt      time.Time // when it was recorded (the session start before the first)
	recovered bool      // ended by crash recovery: not counted as open

	// The checkpoint timer (guarded by mu in either mode): armed when an event is recorded
	// and none is, it signs the head if no checkpoint did meanwhile (checkpointTimer).
	ckTimer *time.Timer
	ckArmed bool

	events prometheus.Counter // the metric of recorded events, looked up at the first append

	// be is the best-effort state, nil for strict sessions. When set, Record queues events
	// unsealed under mu and the writer goroutine seals and appends them under wmu, which then
	// guards seq, prev, pending, scratch and the checkpoint fields instead of mu.
	be  *bestEffort
	wmu sync.Mutex
}

// ID returns the session id.
//
// A nil *Session is a session that is not recorded (a policy said recording: off): every
// method is then a no-op.
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	return s.id
}

// Started returns the session's start time.
func (s *Session) Started() time.Time { return s.start }

// Record seals an event into the chain; it reaches the store at the next Commit. data is
// marshalled to JSON (a []byte or json.RawMessage is taken as already-encoded JSON; an
// event.JSONAppender encodes itself). raw is kept by reference: the caller must not modify it
// until Commit returns.
func (s *Session) Record(t event.Type, data any, raw []byte) {
	if s == nil {
		return
	}
	var b []byte
	borrowed := true // b is the caller's
	switch d := data.(type) {
	case json.RawMessage:
		b = d
	case []byte:
		b = d
	case event.JSONAppender: // the per-statement payloads: json.Marshal's bytes, without reflection
		borrowed = false
		b = d.AppendJSON(make([]byte, 0, 64))
	default:
		borrowed = false
		var err error
		if b, err = json.Marshal(data); err != nil {
			// Payloads are the event package's own structs; this is a programming error, but
			// record it rather than lose the event.
			b, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
		}
	}
	if s.be != nil {
		s.queue(t, b, raw, s.r.now(), borrowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	// Read the clock under the lock: events recorded concurrently (two relay directions) get
	// offsets in the order of their sequence numbers.
	now := s.r.now()
	s.appendLocked(t, b, raw, now)
	if s.checkpointDue(now) {
		s.checkpointLocked(now, false)
	} else {
		s.armCheckpointLocked()
	}
}

// armCheckpointLocked starts the checkpoint timer unless it runs: an event was recorded that
// no checkpoint signs yet. It runs under mu.
func (s *Session) armCheckpointLocked() {
	if s.r.Signer == nil || s.ckArmed || s.ended {
		return
	}
	s.ckArmed = true
	if s.ckTimer == nil {
		s.ckTimer = time.AfterFunc(s.r.checkpointInterval(), s.checkpointTimer)
	} else {
		s.ckTimer.Reset(s.r.checkpointInterval())
	}
}

// checkpointTimer signs the head of a session that recorded nothing for CheckpointInterval
// after an event: without it, the tail of an idle session would stay unsigned until its next
// event or its end. A strict session writes the checkpoint (and the events before it) at once;
// a store error then ends the session at the engine's next Commit, as any other. A best-effort
// session queues the request behind its events, for the writer. It never races End: both run
// under mu, and after End it does nothing.
func (s *Session) checkpointTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ckArmed = false
	if s.ended {
		return
	}
	now := s.r.now()
	if s.be != nil {
		s.be.queue = append(s.be.queue, item{checkpoint: true, at: now})
		s.kick()
		return
	}
	if s.err != nil || s.seq == s.ckSeq {
		return
	}
	s.checkpointLocked(now, false)
	s.commitLocked() // an error is kept in s.err: the next Commit returns it
}

// stopCheckpointTimer stops the timer when the session ends; it runs under mu.
func (s *Session) stopCheckpointTimer() {
	if s.ckTimer != nil {
		s.ckTimer.Stop()
	}
	s.ckArmed = false
}

// checkpointDue reports whether the head needs a checkpoint after an event recorded at now.
func (s *Session) checkpointDue(now time.Time) bool {
	return s.r.Signer != nil && (s.seq-s.ckSeq >= s.r.checkpointEvents() || now.Sub(s.ckAt) >= s.r.checkpointInterval())
}

// appendLocked seals one event onto the chain and queues it for Commit.
func (s *Session) appendLocked(t event.Type, data, raw []byte, now time.Time) {
	s.seq++
	e := &event.Event{Session: s.id, Seq: s.seq, Type: t, Offset: now.Sub(s.start), Time: now.UTC(), Data: data, Raw: raw}
	s.scratch = e.Seal(s.prev, s.scratch)
	s.prev = e.Hash
	s.pending = append(s.pending, e)
}

// checkpointLocked records a checkpoint that signs the current head. Signing costs tens of
// microseconds, which is why it happens every CheckpointEvents events, not per event.
func (s *Session) checkpointLocked(now time.Time, final bool) {
	sig := s.r.Signer.Sign(event.CheckpointMessage(s.id, s.seq, s.prev, final))
	b, _ := json.Marshal(event.CheckpointData{Seq: s.seq, Head: hex.EncodeToString(s.prev[:]),
		KeyID: s.r.Signer.KeyID(), Signature: base64.StdEncoding.EncodeToString(sig), Final: final})
	s.appendLocked(event.Checkpoint, b, nil, now)
	s.ckSeq, s.ckAt = s.seq, now
}

// Commit writes every pending event to the store. The engine calls it before forwarding the
// bytes those events describe; an error means the recording cannot be kept and the session must
// end. For a best-effort session it returns nil at once: the writer goroutine keeps the events
// or counts them as dropped.
func (s *Session) Commit() error {
	if s == nil {
		return nil
	}
	if s.be != nil {
		s.kick()
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commitLocked()
}

func (s *Session) commitLocked() error {
	if s.err != nil {
		return s.err
	}
	if len(s.pending) == 0 {
		return nil
	}
	t0 := time.Now()
	if err := s.w.Append(s.pending...); err != nil {
		s.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		s.r.Metrics.Error("store")
		return s.err
	}
	s.appended(t0)
	clear(s.pending)
	s.pending = s.pending[:0]
	return nil
}

// appended counts the pending events, appended by a call that started at t0, in the metrics.
// It runs under the lock that guards pending.
func (s *Session) appended(t0 time.Time) {
	if m := s.r.Metrics; m != nil {
		m.RecorderLatency.Observe(time.Since(t0).Seconds())
		if s.events == nil {
			s.events = m.EventsRecorded.WithLabelValues(s.protocol)
		}
		s.events.Add(float64(len(s.pending)))
	}
}

// End records session.end and the final checkpoint, writes everything and closes the
// recording's index entry. It is idempotent.
func (s *Session) End(ctx context.Context, d event.SessionEndData) error {
	if s == nil {
		return nil
	}
	s.r.live.remove(s.id)
	now := s.r.now()
	d.DurationNS = int64(now.Sub(s.start))
	if s.be != nil {
		return s.endBestEffort(ctx, d, now)
	}
	return s.end(ctx, d, now, now)
}

// end records d at now and ends the index entry at endedAt.
func (s *Session) end(ctx context.Context, d event.SessionEndData, now, endedAt time.Time) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("session.end: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.appendLocked(event.SessionEnd, b, nil, now)
	if s.r.Signer != nil {
		s.checkpointLocked(now, true)
	}
	s.ended = true
	s.stopCheckpointTimer()
	if m := s.r.Metrics; m != nil && !s.recovered {
		m.SessionsOpen.WithLabelValues(s.protocol, s.target).Dec()
	}
	err = s.commitLocked()
	if serr := s.w.Sync(); err == nil && serr != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, serr)
	}
	reason := d.Reason
	if err != nil {
		reason = "error"
	}
	if eerr := s.w.End(ctx, store.SessionEnd{EndedAt: endedAt.UTC(), Reason: reason, Events: s.seq, Head: s.prev}); err == nil && eerr != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, eerr)
	}
	return err
}

// Head returns the current chain head as hex, for logs.
func (s *Session) Head() string {
	if s == nil {
		return ""
	}
	if s.be != nil {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		return hex.EncodeToString(s.prev[:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return hex.EncodeToString(s.prev[:])
}
