package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// bestEffort is the state of a session whose target has recording.mode best-effort: the session
// goes on when the store stalls or fails, and every event that could not be kept is counted.
//
// How the chain stays verifiable: Record does not seal a best-effort event, it queues it. One
// writer goroutine per session seals the queued events in order and appends them, retrying the
// same sealed events until the store takes them, so a sealed event is never lost while the
// session runs. An event that does not fit in the buffer is dropped before it is sealed: it never
// gets a sequence number and nothing chains to it. The first event kept after a run of drops is
// preceded by a recording.gap event that counts the run. What reaches the store is one unbroken
// chain, signed by the usual checkpoints, with every gap marked in it.
//
// The count of drops shows while the session runs: in the airlock_events_dropped_total metric at
// once, and in the session's index entry (store.Session.DroppedEvents) through the store's
// DropCounter, at most once a second (droppedEvery) and finally at the end.
//
// When End gives up on a store that keeps failing (DrainTimeout), every event the store did not
// take is counted as dropped too, session.end included, and the index entry is ended as
// EndIncomplete at the last event the store took (abandon).
type bestEffort struct {
	limit int
	wake  chan struct{} // capacity 1: the queue has work
	stop  chan struct{} // closed when End stops waiting for a stalled store
	done  chan struct{} // closed when the writer returns
	err   error         // the writer's final result; read only after done is closed

	// Guarded by Session.mu.
	queue    []item
	buffered int           // bytes queued, or sealed and not yet taken by the store
	gap      event.GapData // drops since the last kept event
	dropped  uint64        // every drop of the session
	storeErr string        // the store's last append error, "" once an append succeeds
	idle     *sync.Cond    // broadcast when buffered falls to 0
	end      *endItem      // set by End
	counted  chan struct{} // closed by abandon once it counted what the store did not take

	// The count in the index (DropCounter), guarded by Session.mu.
	saved     uint64        // the count the index holds, as far as we know
	saving    bool          // a write of the count is scheduled or running
	savedAt   time.Time     // when the last write of the count returned
	saveEvery time.Duration // droppedEvery, doubled after each failed write (at most a minute)

	// Owned by the writer goroutine.
	keptSeq  uint64   // the last event the store took
	keptHead [32]byte // and its hash
}

// droppedEvery is how often at most a best-effort session writes its count of dropped events to
// the index while it runs: the count is in the metric at once, and an index write per drop would
// load a store that is already struggling.
const droppedEvery = time.Second

// EndIncomplete is the end reason in the index of a best-effort session whose end the store
// did not take: End gave up waiting, what was buffered is counted as dropped, and the recording
// stops at the last event the store took, without session.end or a final checkpoint.
const EndIncomplete = "incomplete"

// item is a queued, not yet sealed event.
type item struct {
	t         event.Type
	data, raw []byte
	at        time.Time
	size      int
	end       *endItem // set on session.end: seal the final checkpoint and close the recording
	// checkpoint is the checkpoint timer's request: sign the head if no checkpoint does yet.
	// It is not an event.
	checkpoint bool
}

type endItem struct {
	ctx    context.Context
	at     time.Time
	reason string
}

// counts reports whether an item is an event of the session, counted when dropped: not the
// recorder's own gap and checkpoint events, whose loss loses nothing of the session.
func counts(t event.Type) bool {
	return t != event.RecordingGap && t != event.Checkpoint
}

func (r *Recorder) bestEffortBuffer() int {
	if r.BestEffortBuffer > 0 {
		return r.BestEffortBuffer
	}
	return 8 << 20
}

func (r *Recorder) drainTimeout() time.Duration {
	if r.DrainTimeout > 0 {
		return r.DrainTimeout
	}
	return 10 * time.Second
}

// startBestEffort switches a just-started session to best-effort and starts its writer.
func (s *Session) startBestEffort() {
	be := &bestEffort{limit: s.r.bestEffortBuffer(), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), counted: make(chan struct{}),
		saveEvery: droppedEvery, keptSeq: s.seq, keptHead: s.prev}
	be.idle = sync.NewCond(&s.mu)
	s.be = be
	go s.write()
}

// Dropped returns how many events the session could not keep (always 0 when strict).
func (s *Session) Dropped() uint64 {
	if s.be == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.be.dropped
}

// queue buffers one event of a best-effort session, or drops and counts it when the buffer is
// full. It never waits for the store.
func (s *Session) queue(t event.Type, data, raw []byte, now time.Time, borrowed bool) {
	be := s.be
	size := len(data) + len(raw)
	// The caller may reuse its buffers once Record returns (Commit returns at once), so keep
	// copies. Copying before taking the lock keeps the lock short; a dropped event wastes it.
	if borrowed {
		data = bytes.Clone(data)
	}
	raw = bytes.Clone(raw)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	if be.buffered+size > be.limit {
		off := int64(now.Sub(s.start))
		if be.gap.Events == 0 {
			be.gap.FirstOffsetNS = off
		}
		be.gap.Events++
		be.gap.Bytes += uint64(size)
		be.gap.LastOffsetNS = off
		if be.storeErr != "" {
			be.gap.StoreError = be.storeErr
		}
		be.dropped++
		s.saveDroppedLocked()
		s.mu.Unlock()
		if m := s.r.Metrics; m != nil {
			m.EventsDropped.WithLabelValues(s.protocol, s.target).Inc()
		}
		return
	}
	s.queueGapLocked(now)
	be.queue = append(be.queue, item{t: t, data: data, raw: raw, at: now, size: size})
	be.buffered += size
	s.armCheckpointLocked()
	s.mu.Unlock()
}

// saveDroppedLocked schedules a write of the count of dropped events to the index, unless one
// is scheduled or running: at once if the last returned droppedEvery ago, else then. It runs
// under mu.
func (s *Session) saveDroppedLocked() {
	be := s.be
	if be.saving || be.dropped <= be.saved {
		return
	}
	if _, ok := s.r.Store.(DropCounter); !ok {
		return
	}
	be.saving = true
	time.AfterFunc(max(time.Until(be.savedAt.Add(be.saveEvery)), 0), s.saveDropped)
}

// saveDropped writes the count of dropped events to the index, in its own goroutine: the
// writer may be waiting for the same stalled store.
func (s *Session) saveDropped() {
	be := s.be
	s.mu.Lock()
	n := be.dropped
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := s.r.Store.(DropCounter).SetDropped(ctx, s.id, n)
	cancel()
	if err != nil {
		s.r.Metrics.Error("store")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	be.saving = false
	be.savedAt = time.Now()
	if err != nil {
		be.saveEvery = min(2*be.saveEvery, time.Minute)
	} else {
		be.saved = max(be.saved, n)
		be.saveEvery = droppedEvery
	}
	s.saveDroppedLocked() // more drops meanwhile, or a retry
}

// kick wakes the writer. Commit does it rather than Record, so that the writer takes what the
// engine recorded between two forwards in one Append, as a strict session does.
func (s *Session) kick() {
	select {
	case s.be.wake <- struct{}{}:
	default:
	}
}

// queueGapLocked queues the recording.gap event for the drops since the last kept event, if any.
// It is not held to the buffer's bound: it is small and it is what makes the drops visible.
func (s *Session) queueGapLocked(now time.Time) {
	be := s.be
	if be.gap.Events == 0 {
		return
	}
	be.gap.Reason = "buffer_full"
	b, _ := json.Marshal(be.gap)
	be.queue = append(be.queue, item{t: event.RecordingGap, data: b, at: now, size: len(b)})
	be.buffered += len(b)
	be.gap = event.GapData{}
}

// write is the session's writer goroutine: it seals what Record queued and appends it.
func (s *Session) write() {
	be := s.be
	defer close(be.done)
	var items []item
	for {
		s.mu.Lock()
		items, be.queue = be.queue, items[:0]
		s.mu.Unlock()
		if len(items) == 0 {
			select {
			case <-be.wake:
				continue
			case <-be.stop:
				be.err = s.abandon()
				return
			}
		}
		var end *endItem
		size := 0
		s.wmu.Lock()
		for _, it := range items {
			size += it.size
			if it.checkpoint {
				if s.r.Signer != nil && s.seq > s.ckSeq {
					s.checkpointLocked(it.at, false)
				}
				continue
			}
			s.appendLocked(it.t, it.data, it.raw, it.at)
			switch {
			case it.end != nil:
				end = it.end
				if s.r.Signer != nil {
					s.checkpointLocked(it.at, true)
				}
			case s.checkpointDue(it.at):
				s.checkpointLocked(it.at, false)
			}
		}
		s.wmu.Unlock()
		clear(items)
		if !s.appendPending(size) {
			be.err = s.abandon()
			return
		}
		if end != nil {
			be.err = s.finish(end)
			return
		}
	}
}

// appendPending writes the sealed events to the store, retrying until it takes them or End
// gives up. It reports whether they were written.
func (s *Session) appendPending(size int) bool {
	be := s.be
	backoff := 10 * time.Millisecond
	for len(s.pending) > 0 { // none when a checkpoint request found the head signed
		t0 := time.Now()
		err := s.w.Append(s.pending...)
		if err == nil {
			s.appended(t0)
			last := s.pending[len(s.pending)-1]
			be.keptSeq, be.keptHead = last.Seq, last.Hash
			break
		}
		s.r.Metrics.Error("store")
		s.mu.Lock()
		be.storeErr = err.Error()
		s.mu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-be.stop:
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	s.mu.Lock()
	be.buffered -= size
	be.storeErr = ""
	if be.buffered == 0 {
		be.idle.Broadcast()
	}
	s.mu.Unlock()
	return true
}

// finish syncs the recording and closes its index entry, after session.end was written.
func (s *Session) finish(end *endItem) error {
	var err error
	if serr := s.w.Sync(); serr != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, serr)
	}
	reason := end.reason
	if err != nil {
		reason = "error"
	}
	s.wmu.Lock()
	seq, head := s.seq, s.prev
	s.wmu.Unlock()
	s.mu.Lock()
	dropped := s.be.dropped
	s.mu.Unlock()
	if eerr := s.w.End(end.ctx, store.SessionEnd{EndedAt: end.at.UTC(), Reason: reason, Events: seq, Head: head, Dropped: dropped}); err == nil && eerr != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, eerr)
	}
	return err
}

// abandon runs on the writer when End gave up waiting for a store that failed: it counts as
// dropped, in the session's count and the metric, every event of the session the store did not
// take (sealed and retried, or still queued; session.end included, the recorder's own gap and
// checkpoint events not), then ends the index entry as EndIncomplete at the last event the store
// took, with the final count. Should the index refuse too, the entry stays running (crash
// recovery closes it at the next start) and the count goes on being written to it until it
// takes it.
func (s *Session) abandon() error {
	be := s.be
	var n uint64
	for _, e := range s.pending {
		if counts(e.Type) {
			n++
		}
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	s.wmu.Lock()
	s.seq, s.prev = be.keptSeq, be.keptHead
	s.wmu.Unlock()
	s.mu.Lock()
	for _, it := range be.queue {
		if !it.checkpoint && counts(it.t) {
			n++
		}
	}
	clear(be.queue)
	be.queue = be.queue[:0]
	be.dropped += n
	dropped, end := be.dropped, be.end
	be.buffered = 0
	be.idle.Broadcast()
	s.saveDroppedLocked()
	s.mu.Unlock()
	if m := s.r.Metrics; m != nil && n > 0 {
		m.EventsDropped.WithLabelValues(s.protocol, s.target).Add(float64(n))
	}
	close(be.counted)
	ctx, endedAt := context.Background(), s.r.now()
	if end != nil {
		ctx, endedAt = end.ctx, end.at
	}
	if err := s.w.End(ctx, store.SessionEnd{EndedAt: endedAt.UTC(), Reason: EndIncomplete,
		Events: be.keptSeq, Head: be.keptHead, Dropped: dropped}); err != nil {
		return fmt.Errorf("%w: end the incomplete recording: %v", ErrUnavailable, err)
	}
	return nil
}

// endBestEffort queues session.end (with the session's drop count) behind everything buffered
// and waits, at most DrainTimeout or until ctx ends, for the writer to close the recording.
func (s *Session) endBestEffort(ctx context.Context, d event.SessionEndData, now time.Time) error {
	be := s.be
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	s.queueGapLocked(now)
	d.DroppedEvents = be.dropped
	b, err := json.Marshal(d)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("session.end: %w", err)
	}
	be.end = &endItem{ctx: context.WithoutCancel(ctx), at: now, reason: d.Reason}
	be.queue = append(be.queue, item{t: event.SessionEnd, data: b, at: now, size: len(b), end: be.end})
	be.buffered += len(b)
	buffered := be.buffered
	s.stopCheckpointTimer()
	s.mu.Unlock()
	if m := s.r.Metrics; m != nil {
		m.SessionsOpen.WithLabelValues(s.protocol, s.target).Dec()
	}
	s.kick()
	t := time.NewTimer(s.r.drainTimeout())
	defer t.Stop()
	select {
	case <-be.done:
		return be.err
	case <-ctx.Done():
	case <-t.C:
	}
	close(be.stop)
	// A failing store: the writer, waiting to retry, counts what it gives up at once. A store
	// stalled inside Append: that Append may still succeed, and the writer decides when it
	// returns.
	select {
	case <-be.counted:
	case <-be.done:
	case <-time.After(time.Second):
	}
	select {
	case <-be.counted: // abandoned: counted is closed before done
	default:
		select {
		case <-be.done: // the stalled Append succeeded and the writer closed the recording
			return be.err
		default:
		}
	}
	return fmt.Errorf("%w: the store did not take the session's last %d buffered bytes in time; if it fails, what it did not take is counted as dropped and the recording is ended as %s", ErrUnavailable, buffered, EndIncomplete)
}

// waitDrained waits until the store has taken everything buffered (for tests).
func (s *Session) waitDrained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.be.buffered > 0 {
		s.be.idle.Wait()
	}
}
