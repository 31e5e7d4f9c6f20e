package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

func init() {
	register("export", "write a recording as JSON Lines (verifiable offline) or asciicast v2", func(args []string) int {
		return runExport(osEnv(), args)
	})
}

const exportUsage = `export SESSION_ID [--format jsonl|asciicast] [-o FILE]

jsonl (default): every event with its chain and signatures; airlock verify --file checks it
offline. With -o FILE the gateway's public keys are also written to FILE.pub (PEM), for
airlock verify --public-key. asciicast: the session as terminal text with its timing (asciicast
v2, for asciinema play); it is for watching, not for verification.`

func runExport(e *env, args []string) int {
	fs := e.newFlagSet("export", exportUsage)
	format := fs.String("format", "jsonl", "jsonl or asciicast")
	out := fs.String("o", "", "write to FILE instead of stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 || (*format != "jsonl" && *format != "asciicast") {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", exportUsage)
		return exitUsage
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	res, err := c.request(context.Background(), http.MethodGet, "/api/v1/sessions/"+url.PathEscape(pos[0])+"/export", nil, nil)
	if err != nil {
		return e.fail(err)
	}
	defer res.Body.Close()

	w, commit, err := openOutput(e, *out)
	if err != nil {
		return e.fail(err)
	}
	var h verify.Header
	switch *format {
	case "jsonl":
		// Check the stream as it is copied: the copy is what was sent, and a stream that
		// ended early is reported here rather than by a later verify.
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			var err error
			h, err = verify.ReadExport(pr, nil, func(*event.Event) error { return nil })
			io.Copy(io.Discard, pr)
			done <- err
		}()
		_, err = io.Copy(io.MultiWriter(w, pw), res.Body)
		pw.CloseWithError(err)
		if rerr := <-done; err == nil {
			err = rerr
		}
	case "asciicast":
		err = writeAsciicast(w, res.Body, &h)
	}
	if err == nil {
		err = commit()
	}
	if err != nil {
		return e.fail(fmt.Errorf("export %s: %w", pos[0], err))
	}
	if *out != "" && *format == "jsonl" {
		var pem []byte
		for _, k := range h.SigningKeys {
			keys, kerr := signing.ParsePublicKeys([]byte(k.PublicKey))
			if kerr != nil {
				return e.fail(fmt.Errorf("export %s: key %s: %w", pos[0], k.ID, kerr))
			}
			pem = append(pem, signing.MarshalPublicPEM(signing.PublicKey{Key: keys[0].Key, CreatedAt: k.CreatedAt})...)
		}
		if err := os.WriteFile(*out+".pub", pem, 0o644); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stderr, "wrote %s and its signing keys %s.pub\n", *out, *out)
	}
	return exitOK
}

// openOutput returns where to write: stdout, or a temporary file renamed to path by commit so a
// failed export leaves no partial file.
func openOutput(e *env, path string) (io.Writer, func() error, error) {
	if path == "" {
		return e.stdout, func() error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, err
	}
	return f, func() error {
		err := f.Close()
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}, nil
}

// asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a header line, then one
// [seconds, "o", text] line per output. A terminal session (ssh) is written as its terminal
// showed it, with its real size and resizes ("r" events; see termCast). Other recordings are
// rendered as a transcript: PostgreSQL statements with a psql-like prompt, results as unaligned
// rows, errors and notices as psql prints them, each at the offset it was recorded. Checkpoints
// are not shown.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

func writeAsciicast(w io.Writer, r io.Reader, hdr *verify.Header) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var (
		cols    []event.Column
		prompt  = "=> "
		lastOff time.Duration
		werr    error
		tc      *termCast // set for terminal (ssh) sessions, which are written as the terminal saw them
	)
	out := func(off time.Duration, text string) {
		if werr != nil || text == "" {
			return
		}
		if off < lastOff { // asciicast times never go back
			off = lastOff
		}
		lastOff = off
		text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
		werr = enc.Encode([]any{json.Number(strconv.FormatFloat(off.Seconds(), 'f', 6, 64)), "o", text})
	}
	_, err := verify.ReadExport(r, func(h *verify.Header) error {
		*hdr = *h
		var s struct {
			ID        string    `json:"id"`
			User      string    `json:"user"`
			Target    string    `json:"target"`
			Type      string    `json:"type"`
			StartedAt time.Time `json:"started_at"`
		}
		json.Unmarshal(h.Session, &s)
		if s.Type == "ssh" {
			tc = &termCast{enc: enc, title: fmt.Sprintf("airlock session %s: %s -> %s", s.ID, s.User, s.Target), started: s.StartedAt}
			return nil
		}
		prompt = s.Target + "=> "
		return enc.Encode(castHeader{Version: 2, Width: 120, Height: 40, Timestamp: s.StartedAt.Unix(),
			Title: fmt.Sprintf("airlock session %s: %s -> %s", s.ID, s.User, s.Target),
			Env:   map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/sh"}})
	}, func(e *event.Event) error {
		if tc != nil {
			return tc.event(e)
		}
		switch e.Type {
		case event.SessionStart:
			var d event.SessionStartData
			json.Unmarshal(e.Data, &d)
			if d.Database != "" {
				prompt = d.Database + "=> "
			}
			out(e.Offset, fmt.Sprintf("-- airlock: %s connected to %s (%s) from %s at %s\n", d.User, d.Target, d.TargetType, d.ClientAddr, e.Time.UTC().Format(time.RFC3339)))
		case event.Query:
			var d event.QueryData
			json.Unmarshal(e.Data, &d)
			text := prompt + d.Text + "\n"
			if len(d.Params) > 0 {
				var ps []string
				for _, p := range d.Params {
					ps = append(ps, formatParam(p))
				}
				text += "-- parameters: " + strings.Join(ps, ", ") + "\n"
			}
			out(e.Offset, text)
		case event.Columns:
			var d event.ColumnsData
			json.Unmarshal(e.Data, &d)
			cols = d.Columns
			names := make([]string, len(cols))
			for i, c := range cols {
				names[i] = c.Name
			}
			h := strings.Join(names, " | ")
			out(e.Offset, h+"\n"+strings.Repeat("-", min(utf8.RuneCountInString(h), 120))+"\n")
		case event.Rows:
			var b strings.Builder
			event.DecodeRows(e.Raw, func(values [][]byte) error {
				for i, v := range values {
					if i > 0 {
						b.WriteString(" | ")
					}
					switch {
					case v == nil:
					case i < len(cols) && cols[i].Format == 1 || !utf8.Valid(v):
						fmt.Fprintf(&b, `\x%x`, v)
					default:
						b.Write(v)
					}
				}
				b.WriteByte('\n')
				return nil
			})
			out(e.Offset, b.String())
		case event.Result:
			var d event.ResultData
			json.Unmarshal(e.Data, &d)
			text := d.Tag
			if strings.HasPrefix(d.Tag, "SELECT") {
				text = fmt.Sprintf("(%d rows)", d.Rows)
			}
			out(e.Offset, fmt.Sprintf("%s\nTime: %.3f ms\n\n", text, float64(d.DurationNS)/1e6))
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
			out(e.Offset, text)
		case event.Notification:
			var d event.NotificationData
			json.Unmarshal(e.Data, &d)
			out(e.Offset, fmt.Sprintf("Asynchronous notification %q with payload %q received from server process with PID %d.\n", d.Channel, d.Payload, d.PID))
		case event.CopyIn, event.CopyOut:
			if utf8.Valid(e.Raw) {
				out(e.Offset, string(e.Raw))
			} else if len(e.Raw) > 0 {
				out(e.Offset, fmt.Sprintf("-- %s: %d bytes of binary data\n", e.Type, len(e.Raw)))
			}
		case event.Cancel:
			out(e.Offset, "Cancel request sent\n")
		case event.SessionEnd:
			var d event.SessionEndData
			json.Unmarshal(e.Data, &d)
			off := e.Offset
			if d.Reason == "interrupted" {
				// Recorded by crash recovery at the next start, maybe days later.
				off = lastOff
			}
			out(off, fmt.Sprintf("-- airlock: session ended (%s) after %s\n", d.Reason, time.Duration(d.DurationNS).Round(time.Millisecond)))
		}
		return werr
	})
	if err == nil {
		err = werr
	}
	if err == nil && tc != nil {
		err = tc.finish()
	}
	return err
}

// termCast writes a terminal session: the output of its channels as "o" events, the size of
// its first terminal in the header and every later size as an "r" event. The header waits for
// the first size (pty-req), which follows session.start; output before any terminal (an exec
// without a pty) is written with its line ends made terminal line ends.
type termCast struct {
	enc     *json.Encoder
	title   string
	started time.Time
	header  bool
	pending [][]any // events before the header
	pty     map[uint32]bool
	lastOff time.Duration
	end     string
}

func (c *termCast) emit(off time.Duration, kind, text string) error {
	if off < c.lastOff {
		off = c.lastOff
	}
	c.lastOff = off
	ev := []any{json.Number(strconv.FormatFloat(off.Seconds(), 'f', 6, 64)), kind, text}
	if !c.header {
		c.pending = append(c.pending, ev)
		return nil
	}
	return c.enc.Encode(ev)
}

func (c *termCast) writeHeader(cols, rows uint32) error {
	c.header = true
	if err := c.enc.Encode(castHeader{Version: 2, Width: int(cols), Height: int(rows), Timestamp: c.started.Unix(),
		Title: c.title, Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/sh"}}); err != nil {
		return err
	}
	for _, ev := range c.pending {
		if err := c.enc.Encode(ev); err != nil {
			return err
		}
	}
	c.pending = nil
	return nil
}

func (c *termCast) event(e *event.Event) error {
	if c.pty == nil {
		c.pty = map[uint32]bool{}
	}
	switch e.Type {
	case event.TerminalResize:
		var d event.TerminalSizeData
		json.Unmarshal(e.Data, &d)
		if d.Cols == 0 || d.Rows == 0 {
			return nil
		}
		if d.Term != "" {
			c.pty[d.Channel] = true
		}
		if !c.header {
			return c.writeHeader(d.Cols, d.Rows)
		}
		return c.emit(e.Offset, "r", fmt.Sprintf("%dx%d", d.Cols, d.Rows))
	case event.TerminalOutput:
		var d event.TerminalData
		json.Unmarshal(e.Data, &d)
		text := strings.ToValidUTF8(string(e.Raw), "\ufffd")
		if !c.pty[d.Channel] {
			text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
		}
		return c.emit(e.Offset, "o", text)
	case event.SessionEnd:
		var d event.SessionEndData
		json.Unmarshal(e.Data, &d)
		off := e.Offset
		if d.Reason == "interrupted" {
			off = c.lastOff
		}
		c.lastOff = max(c.lastOff, off)
		c.end = d.Reason
	}
	return nil
}

// finish writes the header if no terminal ever had a size (exec sessions only).
func (c *termCast) finish() error {
	if !c.header {
		return c.writeHeader(80, 24)
	}
	return nil
}
