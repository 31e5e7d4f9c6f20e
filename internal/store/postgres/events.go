package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// CorruptError reports events that are not what was written: a missing, inserted, reordered or
// altered event, or a recording shorter or longer than its recorded end says. It mirrors
// filestore.CorruptError; Seq is the sequence number the bad event should have had.
type CorruptError struct {
	Session string
	Seq     uint64
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("recording %s is corrupt at event %d: %s", e.Session, e.Seq, e.Reason)
}

// pageSize is how many events one query of Events reads: memory stays bounded by one row
// whatever the session's size (pgx decodes a row at a time), and no query stays open longer
// than a page of callbacks.
const pageSize = 1000

// Events streams a recording's events after seq `after` in order, recomputing every hash and
// checking the chain. With after > 0 the chain is anchored on the stored hash of event `after`:
// every event passed to fn is verified against its predecessor, and a full check is
// Events(ctx, id, 0, ...). A running session is read up to its last committed Append.
// It returns *CorruptError when an event is not what was written; events before it have been
// passed to fn.
func (s *Store) Events(ctx context.Context, id string, after uint64, fn func(*event.Event) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := s.Session(ctx, id)
	if err != nil {
		return err
	}
	var (
		prev     [32]byte
		seq      = after
		anchored = after == 0
	)
	if after > 0 {
		var h []byte
		err := s.with(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT hash FROM events WHERE session_id = $1 AND seq = $2`, id, int64(after)).Scan(&h)
		})
		switch {
		case err == nil && len(h) == len(prev):
			copy(prev[:], h)
			anchored = true
		case err == nil:
			return &CorruptError{Session: id, Seq: after, Reason: "stored hash is not 32 bytes"}
		case !errors.Is(err, pgx.ErrNoRows):
			return wrap(fmt.Sprintf("read recording %q", id), err)
		}
		// No event `after`: fine if the recording is shorter; corrupt if later events exist
		// (checked below, by the first row's sequence number).
	}
	h := sha256.New()
	var canon []byte
	err = s.scanEvents(ctx, id, int64(after), func(e *event.Event, stored []byte) error {
		if e.Seq != seq+1 {
			return &CorruptError{Session: id, Seq: seq + 1, Reason: fmt.Sprintf("sequence %d follows %d", e.Seq, seq)}
		}
		if !anchored {
			return &CorruptError{Session: id, Seq: after, Reason: "event missing"}
		}
		canon = e.Canonical(canon[:0])
		h.Reset()
		h.Write(prev[:])
		h.Write(canon)
		h.Sum(e.Hash[:0])
		if !bytes.Equal(e.Hash[:], stored) {
			return &CorruptError{Session: id, Seq: e.Seq, Reason: "hash chain broken"}
		}
		e.Prev = prev
		if err := fn(e); err != nil {
			return err
		}
		prev, seq = e.Hash, e.Seq
		return nil
	})
	if err != nil {
		return err
	}
	// An ended session states how many events it has and its last hash: a recording cut
	// short (or extended) after the end is caught here rather than read as complete.
	if sess.EndedAt != nil && after <= sess.Events {
		switch {
		case seq < sess.Events:
			return &CorruptError{Session: id, Seq: seq + 1, Reason: fmt.Sprintf("recording ends at event %d, its end records %d", seq, sess.Events)}
		case seq > sess.Events:
			return &CorruptError{Session: id, Seq: sess.Events + 1, Reason: fmt.Sprintf("event after the recorded end (%d events)", sess.Events)}
		case seq > 0 && fmt.Sprintf("%x", prev) != sess.Head:
			return &CorruptError{Session: id, Seq: seq, Reason: "last event does not match the recorded head"}
		}
	}
	return nil
}

// callbackError carries fn's error out of the query unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }
func (e callbackError) Unwrap() error { return e.err }

// Records implements store.RecordReader: every row of the recording in sequence order (the
// only order the table keeps), without recomputing any hash. A running session is read up to
// its last committed Append. A stored hash that is not 32 bytes is reported as the row's
// damage.
func (s *Store) Records(ctx context.Context, id string, fn func(*store.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := s.Session(ctx, id); err != nil {
		return err
	}
	return s.scanEvents(ctx, id, 0, func(e *event.Event, stored []byte) error {
		rec := store.Record{Event: e}
		if len(stored) != len(rec.Hash) {
			rec.Damage = fmt.Sprintf("stored hash is %d bytes, not 32", len(stored))
		}
		copy(rec.Hash[:], stored)
		e.Hash = rec.Hash
		return fn(&rec)
	})
}

// scanEvents reads session id's rows after sequence number after, in sequence order, a page
// (pageSize rows) per query, and calls fn with each decoded as an event (Hash and Prev are fn's
// to set; the event is reused for the next row) and the hash stored with it. fn's error stops
// the read and is returned as it is; a failed query is wrapped.
func (s *Store) scanEvents(ctx context.Context, id string, after int64, fn func(e *event.Event, stored []byte) error) error {
	last := after
	for {
		n := 0
		err := s.withPool(ctx, s.readPool, func(c *pgx.Conn) error {
			rows, err := c.Query(ctx, `SELECT seq, type, offset_ns, time_ns, data, raw, hash FROM events
				WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, id, last, pageSize)
			if err != nil {
				return err
			}
			defer rows.Close()
			var (
				e               = event.Event{Session: id}
				rseq, off, wall int64
				typ             string
				stored          []byte
			)
			for rows.Next() {
				if err := rows.Scan(&rseq, &typ, &off, &wall, &e.Data, &e.Raw, &stored); err != nil {
					return err
				}
				n++
				last = rseq
				e.Seq, e.Type, e.Offset, e.Time = uint64(rseq), event.Type(typ), time.Duration(off), time.Unix(0, wall).UTC()
				if len(e.Raw) == 0 {
					e.Raw = nil
				}
				if err := fn(&e, stored); err != nil {
					return callbackError{err}
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			return rows.Err()
		})
		var cb callbackError
		if errors.As(err, &cb) {
			return cb.err
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if err != nil {
			return wrap(fmt.Sprintf("read recording %q", id), err)
		}
		if n < pageSize {
			return nil
		}
	}
}

var _ store.RecordReader = (*Store)(nil)
