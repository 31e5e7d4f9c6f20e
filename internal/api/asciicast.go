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
