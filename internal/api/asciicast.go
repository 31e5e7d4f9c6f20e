package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	c := &castWriter{w: bw, title: fmt.Sprintf("airlock session %s: %s -> %s", sess.ID, sess.User, sess.Target), started: sess.StartedAt,
		partial: map[uint32][]byte{}}
	err = s.Store.Events(r.Context(), sess.ID, 0, func(e *event.Event) error {
		c.event(e)
		return c.err
	})
	c.flushHeader()
	if c.err == nil {
		c.err = bw.Flush()
	}
	if err != nil && r.Context().Err() == nil && c.err == nil {
		s.log().Error("api: asciicast export stopped", "session", sess.ID, "err", err)
	}
	return nil
}

type castWriter struct {
	w       io.Writer
	title   string
	started time.Time
	err     error

	// live: the stream of asciinema-player's eventsource driver rather than a file: resizes
	// carry {"cols","rows"} (what the driver hands its terminal as is), and no markers.
	live    bool
	header  bool
	pending []castEvent // events before the first size
	partial map[uint32][]byte
	line    []rune // typed since the last line end
	last    float64
	buf     []byte
}

func (c *castWriter) write(v any) {
	if c.err != nil {
		return
	}
	c.buf = c.buf[:0]
	b, err := json.Marshal(v)
	if err != nil {
		c.err = err
		return
	}
	c.buf = append(append(c.buf, b...), '\n')
	_, c.err = c.w.Write(c.buf)
}

func (c *castWriter) flushHeader() { c.writeHeader(80, 24) }

func (c *castWriter) writeHeader(cols, rows uint32) {
	if c.header {
		return
	}
	c.header = true
	c.write(map[string]any{"version": 2, "width": cols, "height": rows, "timestamp": c.started.Unix(), "title": c.title,
		"env": map[string]string{"TERM": "xterm-256color"}})
	for _, p := range c.pending {
		c.writeEvent(p)
	}
	c.pending = nil
}

type castEvent struct {
	t          float64
	kind, data string
}

func (c *castWriter) emit(t float64, kind, data string) {
	if c.live && kind == "m" {
		return
	}
	if t < c.last { // asciicast times never go back
		t = c.last
	}
	c.last = t
	ev := castEvent{float64(int64(t*1e6)) / 1e6, kind, data}
	if !c.header {
		c.pending = append(c.pending, ev)
		if len(c.pending) >= 1000 { // no terminal size in sight (no pty): the default size
			c.flushHeader()
		}
		return
	}
	c.writeEvent(ev)
}

// writeEvent writes [t, "kind", "data"]: the hot path, by hand.
func (c *castWriter) writeEvent(ev castEvent) {
	if c.err != nil {
		return
	}
	c.buf = append(c.buf[:0], '[')
	c.buf = strconv.AppendFloat(c.buf, ev.t, 'f', -1, 64)
	c.buf = append(c.buf, `, "`...)
	c.buf = append(c.buf, ev.kind...)
	c.buf = append(c.buf, `", `...)
	c.buf = appendString(c.buf, ev.data)
	c.buf = append(c.buf, "]\n"...)
	_, c.err = c.w.Write(c.buf)
}

func (c *castWriter) event(e *event.Event) {
	t := e.Offset.Seconds()
	switch e.Type {
	case event.TerminalResize:
		var d struct {
			Cols, Rows uint32
		}
		if json.Unmarshal(e.Data, &d) != nil || d.Cols == 0 || d.Rows == 0 {
			return
		}
		if !c.header {
			c.writeHeader(d.Cols, d.Rows)
			return
		}
		if c.live {
			c.last = max(c.last, t)
			c.write([]any{float64(int64(c.last*1e6)) / 1e6, "r", map[string]uint32{"cols": d.Cols, "rows": d.Rows}})
			return
		}
		c.emit(t, "r", fmt.Sprintf("%dx%d", d.Cols, d.Rows))
	case event.TerminalOutput:
		var d struct{ Channel uint32 }
		json.Unmarshal(e.Data, &d)
		b := append(c.partial[d.Channel], e.Raw...)
		// Keep an incomplete UTF-8 sequence at the end for the next output.
		cut := len(b)
		for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
			if utf8.RuneStart(b[i]) {
				if !utf8.FullRune(b[i:]) {
					cut = i
				}
				break
			}
		}
		c.partial[d.Channel] = append([]byte(nil), b[cut:]...)
		if cut > 0 {
			c.emit(t, "o", strings.ToValidUTF8(string(b[:cut]), "\uFFFD"))
		}
	case event.TerminalInput:
		for _, ch := range string(e.Raw) {
			switch {
			case ch == '\r' || ch == '\n':
				if l := strings.TrimSpace(string(c.line)); l != "" {
					c.emit(t, "m", l)
				}
				c.line = c.line[:0]
			case ch == 0x7f || ch == '\b':
				if len(c.line) > 0 {
					c.line = c.line[:len(c.line)-1]
				}
			case ch == 0x03 || ch == 0x15: // ^C, ^U
				c.line = c.line[:0]
			case ch >= ' ' && len(c.line) < 500:
				c.line = append(c.line, ch)
			}
		}
	case event.Exec:
		var d struct{ Kind, Command string }
		if json.Unmarshal(e.Data, &d) == nil && d.Kind == "exec" && d.Command != "" {
			c.emit(t, "m", d.Command)
		}
	}
}

// sseLines turns each line a castWriter writes into a server-sent "message" event.
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
// "rows", "time", "init"}: its current size, and everything output so far to draw), then
// [seconds, "o", text] and [seconds, "r", {"cols","rows"}] for each new event as it is recorded, then a "done" event
// once the session ended. The same reading rules as the live route (masked as the client saw
// it; reading someone else's session audited by readRecording).
func (s *Server) liveCast(w http.ResponseWriter, r *http.Request, sess store.Session) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	c := &castWriter{w: sseLines{w}, partial: map[uint32][]byte{}, live: true}
	var (
		last       uint64
		cols, rows uint32 = 80, 24
		init       []byte
		now        float64
		started    bool
		lastSent   = time.Now()
	)
	tick := time.NewTicker(livePoll)
	defer tick.Stop()
	for {
		cur, err := s.Store.Session(ctx, sess.ID)
		if err != nil {
			fmt.Fprintf(w, "event: failure\ndata: %q\n\n", err.Error())
			break
		}
		err = s.Store.Events(ctx, sess.ID, last, func(e *event.Event) error {
			last = e.Seq
			if started {
				c.event(e)
				lastSent = time.Now()
				return c.err
			}
			// Catching up: the screen so far, drawn at once.
			now = e.Offset.Seconds()
			switch e.Type {
			case event.TerminalResize:
				var d struct{ Cols, Rows uint32 }
				if json.Unmarshal(e.Data, &d) == nil && d.Cols > 0 && d.Rows > 0 {
					cols, rows = d.Cols, d.Rows
				}
			case event.TerminalOutput:
				init = append(init, e.Raw...)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil && c.err == nil {
			fmt.Fprintf(w, "event: failure\ndata: %q\n\n", err.Error())
			break
		}
		if c.err != nil || ctx.Err() != nil {
			break
		}
		if !started {
			started = true
			// An incomplete UTF-8 sequence at the end waits for the output that completes it.
			cut := len(init)
			for i := len(init) - 1; i >= 0 && i >= len(init)-utf8.UTFMax; i-- {
				if utf8.RuneStart(init[i]) {
					if !utf8.FullRune(init[i:]) {
						cut = i
					}
					break
				}
			}
			c.partial[0] = append([]byte(nil), init[cut:]...)
			c.header, c.last = true, now
			c.write(map[string]any{"cols": cols, "rows": rows, "time": now, "init": strings.ToValidUTF8(string(init[:cut]), "\uFFFD")})
			lastSent = time.Now()
		}
		if cur.EndedAt != nil {
			fmt.Fprint(w, "event: done\ndata: {}\n\n")
			break
		}
		if time.Since(lastSent) > 15*time.Second {
			fmt.Fprint(w, ": still running\n\n")
			lastSent = time.Now()
		}
		rc.Flush()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	rc.Flush()
	return nil
}
