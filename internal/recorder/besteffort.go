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
}

// item is a queued, not yet sealed event.
type item struct {
	t         event.Type
	data, raw []byte
	at        time.Time
	size      int
	end       *endItem // set on session.end: seal the final checkpoint and close the recording
}

type endItem struct {
	ctx    context.Context
	at     time.Time
	reason string
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
		stop: make(chan struct{}), done: make(chan struct{})}
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
		s.mu.Unlock()
		if m := s.r.Metrics; m != nil {
			m.EventsDropped.WithLabelValues(s.protocol, s.target).Inc()
		}
		return
	}
	s.queueGapLocked(now)
	be.queue = append(be.queue, item{t: t, data: data, raw: raw, at: now, size: size})
	be.buffered += size
	s.mu.Unlock()
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
				return
			}
		}
		var end *endItem
		size := 0
		s.wmu.Lock()
		for _, it := range items {
			size += it.size
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
	for {
		t0 := time.Now()
		err := s.w.Append(s.pending...)
		if err == nil {
			s.appended(t0)
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
	if eerr := s.w.End(end.ctx, store.SessionEnd{EndedAt: end.at.UTC(), Reason: reason, Events: seq, Head: head}); err == nil && eerr != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, eerr)
	}
	return err
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
	be.queue = append(be.queue, item{t: event.SessionEnd, data: b, at: now, size: len(b),
		end: &endItem{ctx: context.WithoutCancel(ctx), at: now, reason: d.Reason}})
	be.buffered += len(b)
	buffered := be.buffered
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
	return fmt.Errorf("%w: the store did not take the session's last %d buffered bytes in time; the recording stays open until crash recovery closes it", ErrUnavailable, buffered)
}

// waitDrained waits until the store has taken everything buffered (for tests).
func (s *Session) waitDrained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.be.buffered > 0 {
		s.be.idle.Wait()
	}
}
