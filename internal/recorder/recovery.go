package recorder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/verify"
)

// Resumer is the store capability crash recovery needs (filestore.Store has it).
type Resumer interface {
	// Resume reopens the recording of a session whose index entry has no end, for appending
	// after its last intact event, and returns that event's seq and hash. An incomplete last
	// record (a torn tail) is cut off first: Append never returned for it, so no byte it
	// describes was forwarded to anyone. A recording with any other damage is refused.
	Resume(ctx context.Context, id string) (w store.Writer, seq uint64, head [32]byte, err error)
}

// EndInterrupted is the end reason of a session that crash recovery closed.
const EndInterrupted = "interrupted"

// Recover closes the sessions that the store still lists as running: the gateway process
// stopped without ending them (kill -9, power loss, a crash). It must run before the gateway
// accepts connections. For each it cuts off a torn tail, checks the chain and the checkpoints
// with keys, appends session.end{reason: "interrupted"} and a final checkpoint signed with the
// current key, and ends the index entry as interrupted at the time of its last intact event.
//
// A recording whose checks find problems is still closed (its findings are logged, and
// verification keeps reporting them: the new checkpoint signs only the head, not the history).
// A recording the store refuses to resume stays running in the index and is reported in the
// returned error; the gateway starts anyway.
func (r *Recorder) Recover(ctx context.Context, log *slog.Logger, keys map[string]ed25519.PublicKey) (recovered int, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res, ok := r.Store.(Resumer)
	if !ok {
		return 0, fmt.Errorf("crash recovery: the store cannot resume recordings")
	}
	// A running session overlaps every window, also one that starts far in the future; an
	// ended one does not.
	list, err := r.Store.Sessions(ctx, store.Filter{From: r.now().Add(100 * 365 * 24 * time.Hour), Limit: 1 << 30})
	if err != nil {
		return 0, fmt.Errorf("crash recovery: list running sessions: %w", err)
	}
	var errs []error
	for _, sess := range list {
		if sess.EndedAt != nil {
			continue
		}
		if err := r.recoverOne(ctx, log, res, sess, keys); err != nil {
			errs = append(errs, err)
			log.Error("crash recovery: session left running", "session", sess.ID, "err", err)
			continue
		}
		recovered++
	}
	return recovered, errors.Join(errs...)
}

func (r *Recorder) recoverOne(ctx context.Context, log *slog.Logger, res Resumer, sess store.Session, keys map[string]ed25519.PublicKey) error {
	w, seq, head, err := res.Resume(ctx, sess.ID)
	if err != nil {
		return fmt.Errorf("resume %s: %w", sess.ID, err)
	}
	v := &verify.Verifier{Keys: keys, Session: sess.ID, Live: true}
	var last event.Event
	err = r.Store.Events(ctx, sess.ID, 0, func(e *event.Event) error {
		v.Add(e)
		last.Seq, last.Offset, last.Time = e.Seq, e.Offset, e.Time
		return nil
	})
	if err != nil {
		v.ReadError(err)
	}
	if last.Seq != seq {
		// The store resumed at a point other than what it lets us read: do not sign it.
		w.End(ctx, store.SessionEnd{Reason: "error"})
		return fmt.Errorf("resume %s: the store resumes after event %d but reads %d events", sess.ID, seq, last.Seq)
	}
	result := v.Finish()
	for _, f := range result.Findings {
		log.Warn("crash recovery: recording has a problem", "session", sess.ID, "kind", f.Kind, "seq", f.Seq, "message", f.Message)
	}
	now := r.now()
	s := &Session{r: r, id: sess.ID, protocol: sess.Type, target: sess.Target, w: w, start: sess.StartedAt,
		seq: seq, prev: head, ckSeq: seq, ckAt: now, recovered: true}
	endedAt := last.Time
	if endedAt.IsZero() {
		endedAt = sess.StartedAt
	}
	d := event.SessionEndData{Reason: EndInterrupted, DurationNS: int64(last.Offset),
		Error: "the gateway stopped without ending the session; closed by crash recovery at the next start"}
	if err := s.end(ctx, d, now, endedAt); err != nil {
		return fmt.Errorf("end %s: %w", sess.ID, err)
	}
	log.Info("crash recovery: session ended as interrupted", "session", sess.ID, "user", sess.User, "target", sess.Target,
		"events", seq, "intact", result.Intact, "signed_before_crash", result.Signed)
	return nil
}
