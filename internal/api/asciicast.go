package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/asciicast"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// exportAsciicast writes a session's terminal as asciicast v2
// (https://docs.asciinema.org/manual/asciicast/v2/), for the web UI's player and for standard
// tools: a header with the terminal's first size, then [seconds, "o", text] for output,
// [seconds, "r", "COLSxROWS"] for each later resize, and [seconds, "m", label] markers for the
// commands: programs started (exec) and lines typed at the terminal (what was typed while the
// terminal did not echo is never recorded). Output split inside a UTF-8 sequence is joined.
// The recording's integrity is not carried: verify it, or export JSON Lines for that.
func (s *Server) exportAsciicast(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.readRecording(r, "export")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.cast"`, sess.ID))
	bw := bufio.NewWriterSize(w, 64<<10)
	c := asciicast.New(bw, castSession(sess))
	c.Markers = true
	err = s.Store.Events(r.Context(), sess.ID, 0, c.Event)
	werr := c.Finish()
	if werr == nil {
		werr = bw.Flush()
	}
	if err != nil || werr != nil {
		if err != nil && r.Context().Err() == nil && werr == nil {
			s.log().Error("api: asciicast export stopped; response aborted", "session", sess.ID, "err", err)
		}
		// As exportSession: the client must see a failed download, not a complete-looking
		// cast of part of the session.
		panic(http.ErrAbortHandler)
	}
	return nil
}

func castSession(sess store.Session) asciicast.Session {
	return asciicast.Session{ID: sess.ID, User: sess.User, Target: sess.Target, Type: sess.Type, StartedAt: sess.StartedAt}
}

// maxLiveScreen bounds the output a live terminal view is first drawn from: the last MiB of
// what the session printed so far, from a line's start. A screen needs far less; keeping all
// of it would hold, for each watcher, everything a session printed (gigabytes for a cat of a
// large file) while the view catches up.
const maxLiveScreen = 1 << 20

// screenTail returns the end of b, at most maxLiveScreen bytes from the start of a line (or,
// with no line end in it, of a UTF-8 sequence), in b's own memory.
func screenTail(b []byte) []byte {
	if len(b) <= maxLiveScreen {
		return b
	}
	t := b[len(b)-maxLiveScreen:]
	if i := bytes.IndexByte(t, '\n'); i >= 0 {
		t = t[i+1:]
	} else {
		for len(t) > 0 && !utf8.RuneStart(t[0]) {
			t = t[1:]
		}
	}
	return append(b[:0], t...)
}

// sseLines turns each line an asciicast.Writer writes into a server-sent "message" event.
type sseLines struct{ w io.Writer }

func (s sseLines) Write(b []byte) (int, error) {
	line := strings.TrimSuffix(string(b), "\n")
	if _, err := io.WriteString(s.w, "data: "+line+"\n\n"); err != nil {
		return 0, err
	}
	return len(b), nil
}

// liveCast streams a running terminal session to asciinema-player's eventsource driver
// (GET .../live?format=asciicast): first a reset to the terminal as it is now ({"cols",
// "rows", "time", "init"}: its current size, and the output so far to draw, its last MiB:
// maxLiveScreen), then
// [seconds, "o", text] and [seconds, "r", {"cols","rows"}] for each new event as it is recorded, then a "done" event
// once the session ended. The same reading rules as the live route (masked as the client saw
// it; reading someone else's session audited by readRecording).
func (s *Server) liveCast(w http.ResponseWriter, r *http.Request, sess store.Session) error {
	s.followLive(w, r, sess.ID, func(out io.Writer) liveFeed {
		var (
			c          *asciicast.Writer // once caught up
			cols, rows uint32            = 80, 24
			screen     []byte
			now        time.Duration
		)
		return liveFeed{
			event: func(e *event.Event) error {
				if c != nil {
					return c.Event(e)
				}
				// Catching up: the screen so far, drawn at once by the reset.
				now = e.Offset
				switch e.Type {
				case event.TerminalResize:
					var d struct{ Cols, Rows uint32 }
					if json.Unmarshal(e.Data, &d) == nil && d.Cols > 0 && d.Rows > 0 {
						cols, rows = d.Cols, d.Rows
					}
				case event.TerminalOutput:
					if screen = append(screen, e.Raw...); len(screen) > 2*maxLiveScreen {
						screen = screenTail(screen)
					}
				}
				return nil
			},
			caughtUp: func() error {
				if c == nil {
					c = asciicast.Live(sseLines{out}, castSession(sess), now, cols, rows, screenTail(screen))
					screen = nil
				}
				return c.Err()
			},
			end:     func(store.Session) { fmt.Fprint(out, "event: done\ndata: {}\n\n") },
			failure: func(err error) { fmt.Fprintf(out, "event: failure\ndata: %q\n\n", err.Error()) },
		}
	})
	return nil
}
