package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Terminator ends a session in progress with a cause its engine tells the client
// (recorder.Recorder). false: no such session runs here.
type Terminator interface {
	Terminate(id string, cause error) bool
}

// Dialer reaches a target (connector.Connector).
type Dialer interface {
	Dial(ctx context.Context, t target.Target) (net.Conn, error)
}

type terminateRequest struct {
	Reason string `json:"reason"`
}

// terminateSession ends a running session (admins only). The reason reaches the session's user
// in their protocol (for PostgreSQL: a FATAL error "terminating connection: the session was
// terminated by an administrator: REASON") and the recording's end. Audited before it is done;
// a refusal is audited too.
func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) error {
	// Admins only: the route table refuses (and audits) anyone else.
	id := auth.FromContext(r.Context())
	sid := r.PathValue("id")
	var req terminateRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Reason == "" {
		return errorf(http.StatusBadRequest, "bad_request", `"reason" is required: the session's user is told it`)
	}
	if len(req.Reason) > 500 {
		return errorf(http.StatusBadRequest, "bad_request", "reason is longer than 500 bytes")
	}
	sess, err := s.Store.Session(r.Context(), sid)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found", "no session %q", sid)
	}
	if err != nil {
		return fmt.Errorf("get session %s: %w", sid, err)
	}
	if sess.EndedAt != nil {
		return errorf(http.StatusConflict, "ended", "session %s already ended", sid)
	}
	entry := audit.Entry{Action: audit.ActionSessionTerminate, Actor: id.User, Outcome: audit.OK, Subject: sid,
		Detail: map[string]string{"reason": req.Reason, "owner": sess.User, "target": sess.Target}}
	if err := s.audit(r, entry); err != nil {
		return err
	}
	if s.Terminator == nil || !s.Terminator.Terminate(sid, fmt.Errorf("%w: %s", engine.ErrTerminated, req.Reason)) {
		entry.Outcome, entry.Detail["error"] = audit.Failed, "not running on this gateway"
		s.audit(r, entry)
		return errorf(http.StatusConflict, "not_running", "session %s is not running on this gateway (it may have just ended)", sid)
	}
	s.log().Info("api: session terminated", "session", sid, "by", id.User, "reason", req.Reason)
	return writeJSON(w, http.StatusAccepted, map[string]any{"id": sid, "terminated": true, "reason": req.Reason})
}

// livePoll is how often liveSession looks for new events. As of 2026-11 the stores have no
// notification of appends, so a watcher polls; a recording read from a position is cheap.
const livePoll = 250 * time.Millisecond

// liveRecheck is how often a live stream checks again the credential that opened it (its
// expiry, a revocation, a revoked service account): a stream lasts as long as its session, so
// the check made when it opened is not enough.
const liveRecheck = time.Second

// liveSession streams a session's events as server-sent events while it runs: every event
// already recorded (after ?after=N), then each new one as it is recorded, then an "end" event
// once the session ended and everything was sent. Values are masked as the client saw them;
// reading someone else's recording is audited like the events route.
func (s *Server) liveSession(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.readRecording(r, "live")
	if err != nil {
		return err
	}
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "after: %q is not a sequence number", v)
		}
	}
	if r.URL.Query().Get("format") == "asciicast" {
		return s.liveCast(w, r, sess)
	}
	s.followLive(w, r, sess.ID, func(out io.Writer) liveFeed {
		rr := &rowRenderer{}
		var werr error
		send := func(name string, v any) {
			if werr != nil {
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				werr = err
				return
			}
			_, werr = fmt.Fprintf(out, "event: %s\ndata: %s\n\n", name, b)
		}
		return liveFeed{
			event: func(e *event.Event) error {
				if e.Type == event.Columns {
					rr.setColumns(e.Data)
				}
				if e.Seq <= after {
					return nil
				}
				ej := toEventJSON(rr, e)
				send("event", &ej)
				return werr
			},
			end:     func(cur store.Session) { send("end", map[string]any{"session": toSessionJSON(cur)}) },
			failure: func(err error) { send("failure", map[string]string{"error": err.Error()}) },
		}
	})
	return nil
}

// liveFeed is what a live route makes of a session's events (followLive).
type liveFeed struct {
	// event takes each event read, in order; an error (the client's write failed) ends the
	// stream.
	event func(e *event.Event) error
	// caughtUp, when set, runs after each round of reading, once the events so far are taken.
	caughtUp func() error
	// end runs once the session ended and every event was taken; failure when the store
	// cannot be read.
	end     func(cur store.Session)
	failure func(err error)
}

// sentCounter counts what a live stream wrote, so that a silent one gets its keepalive.
type sentCounter struct {
	w io.Writer
	n int64
}

func (c *sentCounter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// followLive streams a session's events to w as server-sent events while it runs: it reads
// what the store holds, then every livePoll what was added, until the session ended and all of
// it was read (f.end), the client left, a write failed, or the caller's credential no longer
// passes (checked again every liveRecheck; f.failure says why). newFeed makes the feed that
// writes to out. A stream silent for 15 s gets a comment, so that proxies keep it open.
func (s *Server) followLive(w http.ResponseWriter, r *http.Request, id string, newFeed func(out io.Writer) liveFeed) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	var (
		last     uint64 // last seq read from the store, taken or not
		werr     error  // the first error of f.event or f.caughtUp: the client is gone
		sent     = &sentCounter{w: w}
		sentAt   = time.Now()
		sentSeen int64
		checked  = time.Now() // the credential was checked when the request came in
	)
	f := newFeed(sent)
	tick := time.NewTicker(livePoll)
	defer tick.Stop()
	for {
		if time.Since(checked) >= liveRecheck {
			if err := s.stillAuthenticated(r); err != nil {
				s.log().Info("api: live stream ended: the credential no longer passes", "session", id, "err", err)
				f.failure(err)
				break
			}
			checked = time.Now()
		}
		// Whether it had ended before this read: then the read is the last one needed.
		cur, err := s.Store.Session(ctx, id)
		if err != nil {
			f.failure(err)
			break
		}
		err = s.Store.Events(ctx, id, last, func(e *event.Event) error {
			last = e.Seq
			werr = f.event(e)
			return werr
		})
		if err != nil && ctx.Err() == nil && werr == nil {
			f.failure(err)
			break
		}
		if werr == nil && f.caughtUp != nil {
			werr = f.caughtUp()
		}
		if werr != nil || ctx.Err() != nil {
			break
		}
		if cur.EndedAt != nil {
			f.end(cur)
			break
		}
		if n := sent.n; n != sentSeen {
			sentSeen, sentAt = n, time.Now()
		} else if time.Since(sentAt) > 15*time.Second {
			if _, err := fmt.Fprint(w, ": still running\n\n"); err != nil {
				break
			}
			sentAt = time.Now()
		}
		rc.Flush()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	rc.Flush()
}

// testTarget checks that the gateway reaches a target's address (admins only): a TCP
// connection through the gateway's connector within 5 seconds. It does not log in: the
// target's credentials are checked when a session starts.
func (s *Server) testTarget(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name") // admins only (the route table)
	t, err := s.Targets.Lookup(r.Context(), name)
	if errors.Is(err, target.ErrUnknown) {
		return errorf(http.StatusNotFound, "not_found", "no target %q", name)
	}
	if err != nil {
		return fmt.Errorf("look up target %s: %w", name, err)
	}
	if s.Connector == nil {
		return errorf(http.StatusNotImplemented, "not_implemented", "this gateway has no connector to test with")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := s.Connector.Dial(ctx, t)
	took := time.Since(start)
	out := map[string]any{"target": t.Name, "address": t.Address, "ok": err == nil, "duration_ms": took.Milliseconds()}
	if err != nil {
		out["error"] = err.Error()
	} else {
		conn.Close()
	}
	return writeJSON(w, http.StatusOK, out)
}
