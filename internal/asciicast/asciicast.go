// Package asciicast writes a recorded session as asciicast v2
// (https://docs.asciinema.org/manual/asciicast/v2/), the format asciinema's player and tools
// play: a header line, then one [seconds, code, data] line per event. It is the one converter
// of the gateway's export (and so the web UI's player and live view) and of `airlock export`.
//
// A terminal session (ssh, kubernetes exec and attach) is written as its terminal showed it:
// the size of its first terminal in the header, every later size as an "r" event, each output
// as an "o" event (output split inside a UTF-8 sequence joined, output of a channel without a
// terminal given terminal line ends), and, with Markers, an "m" marker for each program started
// and each line typed (what was typed while the terminal did not echo is never recorded).
// Other sessions (postgres, mysql) are written as a transcript: statements with a psql-like
// prompt, results as unaligned rows, errors and notices as psql prints them, each at the offset
// it was recorded, the controls in their text written as escapes (\x1b).
package asciicast

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/termsafe"
)

// Session is what the header says of the session.
type Session struct {
	ID, User, Target, Type string
	StartedAt              time.Time
}

// Terminal reports whether sessions of type typ are terminal sessions.
func Terminal(typ string) bool { return typ == "ssh" || typ == "kubernetes" }

// maxPending bounds the events held back while a terminal session has no size yet (an exec
// without a terminal): past it, the header takes the default size.
const maxPending = 1000

// Writer converts one session's events, in order.
type Writer struct {
	// Markers adds "m" events for the programs started and the lines typed at a terminal.
	Markers bool

	w        io.Writer
	str      bytes.Buffer // JSON strings, encoded by enc
	enc      *json.Encoder
	sess     Session
	terminal bool
	err      error
	buf      []byte

	header  bool
	pending []line // before the header
	last    float64

	// terminal sessions
	partial map[uint32][]byte // an incomplete UTF-8 sequence at the end of a channel's output
	pty     map[uint32]bool
	typed   []rune // typed since the last line end
	// live: the stream of asciinema-player's eventsource driver (see Live)
	live bool

	// transcripts
	prompt string
	cols   []event.Column
}

type line struct {
	t          float64
	code, data string
}

// New returns a Writer of sess's events to w.
func New(w io.Writer, sess Session) *Writer {
	c := &Writer{w: w, sess: sess, terminal: Terminal(sess.Type), partial: map[uint32][]byte{}, pty: map[uint32]bool{},
		prompt: sess.Target + "=> "}
	if !c.terminal {
		c.writeHeader(120, 40)
	}
	return c
}

// Live returns a Writer for asciinema-player's eventsource driver, for a terminal session that
// is still running, after writing the driver's reset: {"cols","rows","time","init"}, the
// terminal's size now, the session's offset now, and screen, everything output so far, to draw
// at once. Later events are written from now: no header and no markers, and each resize as
// {"cols","rows"}, which that driver hands its terminal as it is. An incomplete UTF-8 sequence
// at the end of screen waits for the output that completes it.
func Live(w io.Writer, sess Session, now time.Duration, cols, rows uint32, screen []byte) *Writer {
	c := &Writer{w: w, sess: sess, terminal: true, live: true, header: true, last: now.Seconds(),
		partial: map[uint32][]byte{}, pty: map[uint32]bool{}}
	cut := completeUTF8(screen)
	c.partial[0] = append([]byte(nil), screen[cut:]...)
	c.writeJSON(map[string]any{"cols": cols, "rows": rows, "time": now.Seconds(), "init": strings.ToValidUTF8(string(screen[:cut]), "\uFFFD")})
	return c
}

// Err is the first write error.
func (c *Writer) Err() error { return c.err }

// Finish writes the header if no terminal ever had a size (programs without one only).
func (c *Writer) Finish() error {
	c.writeHeader(80, 24)
	return c.err
}

func (c *Writer) writeHeader(cols, rows uint32) {
	if c.header {
		return
	}
	c.header = true
	env := map[string]string{"TERM": "xterm-256color"}
	if !c.terminal {
		env["SHELL"] = "/bin/sh"
	}
	c.writeJSON(map[string]any{"version": 2, "width": cols, "height": rows, "timestamp": c.sess.StartedAt.Unix(),
		"title": fmt.Sprintf("airlock session %s: %s -> %s", c.sess.ID, c.sess.User, c.sess.Target), "env": env})
	for _, p := range c.pending {
		c.writeLine(p)
	}
	c.pending = nil
}

func (c *Writer) writeJSON(v any) {
	if c.err != nil {
		return
	}
	c.str.Reset()
	if c.err = c.encoder().Encode(v); c.err != nil {
		return
	}
	_, c.err = c.w.Write(c.str.Bytes())
}

// encoder encodes into c.str, with <, > and & as they are (a player shows them).
func (c *Writer) encoder() *json.Encoder {
	if c.enc == nil {
		c.enc = json.NewEncoder(&c.str)
		c.enc.SetEscapeHTML(false)
	}
	return c.enc
}

// emit writes [t, code, data], t never before the last event's.
func (c *Writer) emit(t float64, code, data string) {
	if code == "m" && (!c.Markers || c.live) {
		return
	}
	t = max(t, c.last)
	c.last = t
	l := line{float64(int64(t*1e6)) / 1e6, code, data}
	if !c.header {
		c.pending = append(c.pending, l)
		if len(c.pending) >= maxPending {
			c.writeHeader(80, 24)
		}
		return
	}
	c.writeLine(l)
}

// writeLine writes [t, "code", "data"]: the hot path, by hand.
func (c *Writer) writeLine(l line) {
	if c.err != nil {
		return
	}
	c.buf = append(c.buf[:0], '[')
	c.buf = strconv.AppendFloat(c.buf, l.t, 'f', -1, 64)
	c.buf = append(c.buf, `, "`...)
	c.buf = append(c.buf, l.code...)
	c.buf = append(c.buf, `", `...)
	c.buf = c.appendString(c.buf, l.data)
	c.buf = append(c.buf, "]\n"...)
	_, c.err = c.w.Write(c.buf)
}

// Event converts one event.
func (c *Writer) Event(e *event.Event) error {
	if c.terminal {
		c.terminalEvent(e)
	} else {
		c.transcriptEvent(e)
	}
	return c.err
}

func (c *Writer) terminalEvent(e *event.Event) {
	t := e.Offset.Seconds()
	switch e.Type {
	case event.TerminalResize:
		var d event.TerminalSizeData
		if json.Unmarshal(e.Data, &d) != nil || d.Cols == 0 || d.Rows == 0 {
			return
		}
		if d.Term != "" {
			c.pty[d.Channel] = true
		}
		switch {
		case !c.header:
			c.writeHeader(d.Cols, d.Rows)
		case c.live:
			c.last = max(c.last, t)
			c.writeJSON([]any{float64(int64(c.last*1e6)) / 1e6, "r", map[string]uint32{"cols": d.Cols, "rows": d.Rows}})
		default:
			c.emit(t, "r", fmt.Sprintf("%dx%d", d.Cols, d.Rows))
		}
	case event.TerminalOutput:
		var d event.TerminalData
		json.Unmarshal(e.Data, &d)
		b := append(c.partial[d.Channel], e.Raw...)
		cut := completeUTF8(b)
		c.partial[d.Channel] = append([]byte(nil), b[cut:]...)
		if cut == 0 {
			return
		}
		text := strings.ToValidUTF8(string(b[:cut]), "\uFFFD")
		if !c.pty[d.Channel] {
			text = terminalLineEnds(text)
		}
		c.emit(t, "o", text)
	case event.TerminalInput:
		for _, ch := range string(e.Raw) {
			switch {
			case ch == '\r' || ch == '\n':
				if l := strings.TrimSpace(string(c.typed)); l != "" {
					c.emit(t, "m", l)
				}
				c.typed = c.typed[:0]
			case ch == 0x7f || ch == '\b':
				if len(c.typed) > 0 {
					c.typed = c.typed[:len(c.typed)-1]
				}
			case ch == 0x03 || ch == 0x15: // ^C, ^U
				c.typed = c.typed[:0]
			case ch >= ' ' && len(c.typed) < 500:
				c.typed = append(c.typed, ch)
			}
		}
	case event.Exec:
		var d event.ExecData
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		if d.PTY { // a kubectl exec -t has no pty-req: its exec says whether it has a terminal
			c.pty[d.Channel] = true
		}
		if d.Kind == "exec" && d.Command != "" {
			c.emit(t, "m", d.Command)
		}
	case event.SessionEnd:
		c.last = max(c.last, c.endOffset(e))
	}
}

// endOffset is when a session.end happened in the session's time: one that crash recovery
// recorded at the next start, maybe days later, is put at the last event.
func (c *Writer) endOffset(e *event.Event) float64 {
	var d event.SessionEndData
	json.Unmarshal(e.Data, &d)
	if d.Reason == "interrupted" {
		return c.last
	}
	return e.Offset.Seconds()
}

// completeUTF8 is the length of b without an incomplete UTF-8 sequence at its end.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// terminalLineEnds makes "\n" line ends "\r\n", as a terminal's output has them.
func terminalLineEnds(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// out writes a transcript's text. What it quotes was recorded (statements, values, messages):
// its controls are written as escapes (termsafe.Visible), so that a player shows them rather
// than obeys them.
func (c *Writer) out(t float64, text string) {
	if text != "" {
		c.emit(t, "o", terminalLineEnds(termsafe.Visible(text)))
	}
}

func (c *Writer) transcriptEvent(e *event.Event) {
	t := e.Offset.Seconds()
	switch e.Type {
	case event.SessionStart:
		var d event.SessionStartData
		json.Unmarshal(e.Data, &d)
		if d.Database != "" {
			c.prompt = d.Database + "=> "
		}
		c.out(t, fmt.Sprintf("-- airlock: %s connected to %s (%s) from %s at %s\n", d.User, d.Target, d.TargetType, d.ClientAddr, e.Time.UTC().Format(time.RFC3339)))
	case event.Query:
		var d event.QueryData
		json.Unmarshal(e.Data, &d)
		text := c.prompt + d.Text + "\n"
		if len(d.Params) > 0 {
			ps := make([]string, len(d.Params))
			for i, p := range d.Params {
				ps[i] = p.SQL()
			}
			text += "-- parameters: " + strings.Join(ps, ", ") + "\n"
		}
		c.out(t, text)
	case event.Columns:
		var d event.ColumnsData
		json.Unmarshal(e.Data, &d)
		c.cols = d.Columns
		names := make([]string, len(c.cols))
		for i, col := range c.cols {
			names[i] = col.Name
		}
		h := strings.Join(names, " | ")
		c.out(t, h+"\n"+strings.Repeat("-", min(utf8.RuneCountInString(h), 120))+"\n")
	case event.Rows:
		var b strings.Builder
		event.DecodeRows(e.Raw, func(values [][]byte) error {
			for i, v := range values {
				if i > 0 {
					b.WriteString(" | ")
				}
				switch {
				case v == nil:
				case i < len(c.cols) && c.cols[i].Format == 1 || !utf8.Valid(v):
					fmt.Fprintf(&b, `\x%x`, v)
				default:
					b.Write(v)
				}
			}
			b.WriteByte('\n')
			return nil
		})
		c.out(t, b.String())
	case event.Result:
		var d event.ResultData
		json.Unmarshal(e.Data, &d)
		text := d.Tag
		if strings.HasPrefix(d.Tag, "SELECT") {
			text = fmt.Sprintf("(%d rows)", d.Rows)
		}
		c.out(t, fmt.Sprintf("%s\nTime: %.3f ms\n\n", text, float64(d.DurationNS)/1e6))
	case event.Error, event.Notice:
		var d event.MessageData
		json.Unmarshal(e.Data, &d)
		text := fmt.Sprintf("%s:  %s\n", d.Severity, d.Message)
		if d.Detail != "" {
			text += "DETAIL:  " + d.Detail + "\n"
		}
		if d.Hint != "" {
			text += "HINT:  " + d.Hint + "\n"
		}
		c.out(t, text)
	case event.Notification:
		var d event.NotificationData
		json.Unmarshal(e.Data, &d)
		c.out(t, fmt.Sprintf("Asynchronous notification %q with payload %q received from server process with PID %d.\n", d.Channel, d.Payload, d.PID))
	case event.CopyIn, event.CopyOut:
		if utf8.Valid(e.Raw) {
			c.out(t, string(e.Raw))
		} else if len(e.Raw) > 0 {
			c.out(t, fmt.Sprintf("-- %s: %d bytes of binary data\n", e.Type, len(e.Raw)))
		}
	case event.Cancel:
		c.out(t, "Cancel request sent\n")
	case event.SessionEnd:
		var d event.SessionEndData
		json.Unmarshal(e.Data, &d)
		c.out(c.endOffset(e), fmt.Sprintf("-- airlock: session ended (%s) after %s\n", d.Reason, time.Duration(d.DurationNS).Round(time.Millisecond)))
	}
}

// appendString appends s as a JSON string.
func (c *Writer) appendString(dst []byte, s string) []byte {
	c.str.Reset()
	c.encoder().Encode(s)
	return append(dst, bytes.TrimSuffix(c.str.Bytes(), []byte("\n"))...)
}
