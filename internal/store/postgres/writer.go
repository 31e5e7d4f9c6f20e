package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// Create registers a session. The row is committed when Create returns.
func (s *Store) Create(ctx context.Context, sess store.Session) (store.Writer, error) {
	if err := store.CheckSessionID(sess.ID); err != nil {
		return nil, err
	}
	if sess.StartedAt.IsZero() {
		sess.StartedAt = s.opts.Now()
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	// Lock first: there is no moment when the row exists and another gateway's recovery could
	// take the session for an abandoned one.
	locked, err := s.live.tryLock(ctx, sess.ID)
	if err != nil {
		return nil, wrap(fmt.Sprintf("create session %q: lock", sess.ID), err)
	}
	if !locked {
		return nil, fmt.Errorf("create session %q: %w", sess.ID, store.ErrExists)
	}
	err = s.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO sessions (id, "user", target, type, client_addr, started_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			sess.ID, sess.User, sess.Target, sess.Type, sess.ClientAddr, sess.StartedAt)
		return err
	})
	if err != nil {
		s.live.unlock(sess.ID)
		if pgCode(err) == codeUniqueViolation {
			return nil, fmt.Errorf("create session %q: %w", sess.ID, store.ErrExists)
		}
		return nil, wrap(fmt.Sprintf("create session %q", sess.ID), err)
	}
	return &writer{s: s, id: sess.ID}, nil
}

// Resume reopens a session whose end was never recorded (the gateway recording it stopped), for
// crash recovery to append the session's end. It refuses a session that a running gateway (this
// one or another sharing the database) is recording, and a recording that does not verify
// (*CorruptError): nothing is appended after events that are not what was written. There is no
// torn tail to cut: each Append committed whole or not at all. It returns the writer and the seq
// and hash of the last event.
func (s *Store) Resume(ctx context.Context, id string) (store.Writer, uint64, [32]byte, error) {
	var head [32]byte
	sess, err := s.Session(ctx, id)
	if err != nil {
		return nil, 0, head, err
	}
	if sess.EndedAt != nil {
		return nil, 0, head, fmt.Errorf("resume session %q: end already recorded: %w", id, store.ErrExists)
	}
	locked, err := s.live.tryLock(ctx, id)
	if err != nil {
		return nil, 0, head, wrap(fmt.Sprintf("resume session %q: lock", id), err)
	}
	if !locked {
		return nil, 0, head, fmt.Errorf("resume session %q: it is being recorded: %w", id, store.ErrExists)
	}
	var seq uint64
	err = s.Events(ctx, id, 0, func(e *event.Event) error {
		seq, head = e.Seq, e.Hash
		return nil
	})
	if err != nil {
		s.live.unlock(id)
		return nil, 0, [32]byte{}, fmt.Errorf("resume session %q: %w", id, err)
	}
	return &writer{s: s, id: id, seq: seq, head: head}, seq, head, nil
}

// writer appends one session's events. Only the recorder's goroutine uses it.
type writer struct {
	s     *Store
	id    string
	seq   uint64
	head  [32]byte
	err   error // sticky: after a write of unknown outcome the tail is unknown
	ended bool

	// Column buffers reused between Appends.
	seqs, offsets, times []int64
	types                []string
	datas, raws, hashes  [][]byte
}

// insertEvents adds a batch in one statement: one round trip, and one text to prepare whatever
// the batch size (a multi-row VALUES would be a new statement per size). See BenchmarkAppend
// for how it compares with CopyFrom.
const insertEvents = `INSERT INTO events (session_id, seq, type, offset_ns, time_ns, data, raw, hash)
	SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[], $8::bytea[])`

// Append inserts events in one statement, committed (and so durable as the server's
// synchronous_commit says) when it returns. It refuses events that do not continue the chain
// exactly (next Seq, Prev equal to the last Hash, this session), and writes all or none.
func (w *writer) Append(events ...*event.Event) error {
	if len(events) == 0 {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if w.ended || w.s.checkOpen() != nil {
		return fmt.Errorf("append to session %q: %w", w.id, store.ErrClosed)
	}
	seq, head := w.seq, w.head
	w.seqs, w.offsets, w.times, w.types = w.seqs[:0], w.offsets[:0], w.times[:0], w.types[:0]
	w.datas, w.raws, w.hashes = w.datas[:0], w.raws[:0], w.hashes[:0]
	for _, e := range events {
		if err := store.CheckNext(w.id, seq, head, e); err != nil {
			return err
		}
		data := e.Data
		if data == nil {
			data = []byte{}
		}
		var raw []byte
		if len(e.Raw) > 0 {
			raw = e.Raw
		}
		w.seqs = append(w.seqs, int64(e.Seq))
		w.types = append(w.types, string(e.Type))
		w.offsets = append(w.offsets, int64(e.Offset))
		w.times = append(w.times, e.Time.UnixNano())
		w.datas = append(w.datas, data)
		w.raws = append(w.raws, raw)
		w.hashes = append(w.hashes, e.Hash[:])
		seq, head = e.Seq, e.Hash
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.s.opts.WriteTimeout)
	defer cancel()
	err := w.s.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, insertEvents, w.id, w.seqs, w.types, w.offsets, w.times, w.datas, w.raws, w.hashes)
		return err
	})
	clear(w.datas) // do not keep the caller's buffers alive
	clear(w.raws)
	clear(w.hashes)
	if err != nil {
		err = wrap(fmt.Sprintf("append to session %q", w.id), err)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code == codeUniqueViolation {
			// Either we cannot know whether the statement committed, or someone else wrote
			// this session's events: what we believe the tail is may be wrong from now on.
			w.err = err
		}
		return err
	}
	w.seq, w.head = seq, head
	return nil
}

// Sync returns nil: Append returns only after its transaction committed.
func (w *writer) Sync() error { return w.err }

// End records the session's end, once. Events and Head are recorded as this writer wrote them;
// an end whose counts disagree is still recorded (the events are the truth) and reported.
func (w *writer) End(ctx context.Context, end store.SessionEnd) error {
	if w.ended {
		return fmt.Errorf("end session %q: end already recorded: %w", w.id, store.ErrExists)
	}
	w.ended = true
	defer w.s.live.unlock(w.id)
	if end.EndedAt.IsZero() {
		end.EndedAt = w.s.opts.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.opts.WriteTimeout)
	defer cancel()
	var n int64
	err := w.s.with(ctx, func(c *pgx.Conn) error {
		q, args := `UPDATE sessions SET ended_at = $2, end_reason = $3, events = $4, head = $5`,
			[]any{w.id, end.EndedAt, end.Reason, int64(w.seq), w.head[:]}
		if end.Dropped > 0 {
			// Only then: a gateway role granted UPDATE on the columns of schema 1 alone still
			// ends the sessions that dropped nothing.
			q += `, dropped_events = greatest(dropped_events, $6)`
			args = append(args, int64(min(end.Dropped, math.MaxInt64)))
		}
		tag, err := c.Exec(ctx, q+` WHERE id = $1 AND ended_at IS NULL`, args...)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return wrap(fmt.Sprintf("end session %q", w.id), err)
	}
	if n == 0 {
		return fmt.Errorf("end session %q: end already recorded: %w", w.id, store.ErrExists)
	}
	if (end.Events != w.seq || end.Head != w.head) && (end.Events != 0 || end.Head != [32]byte{}) {
		return fmt.Errorf("end session %q: caller counted %d events, the recording holds %d (recorded)", w.id, end.Events, w.seq)
	}
	return nil
}
