package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/termsafe"
)

func init() {
	register("replay", "print a recorded session as it happened", func(args []string) int {
		return runReplay(osEnv(), args)
	})
}

// apiEvent is an event as the API returns it.
type apiEvent struct {
	Seq      uint64              `json:"seq"`
	Type     string              `json:"type"`
	OffsetNS int64               `json:"offset_ns"`
	Time     time.Time           `json:"time"`
	Data     json.RawMessage     `json:"data"`
	Rows     [][]json.RawMessage `json:"rows"`
	RowsErr  string              `json:"rows_error"`
	// With reveal (auditors and admins; audited): the originals of masked rows.
	RevealedRows [][]json.RawMessage `json:"revealed_rows"`
	RevealErr    string              `json:"reveal_error"`
	// ... and of masked errors, notices, notifications (data) and COPY output (text/base64).
	RevealedData   json.RawMessage `json:"revealed_data"`
	RevealedText   *string         `json:"revealed_text"`
	RevealedBase64 *string         `json:"revealed_base64"`
	Text           *string         `json:"text"`
	Base64         *string         `json:"base64"`
}

// streamEvents reads a session's events one at a time from the API's streamed answer, so that
// memory stays flat whatever the recording's size. It returns the answer's top-level "error"
// (a recording that could not be read to its end), if any.
// With reveal the rows events also carry the originals of masked values (auditors and admins
// only; the gateway audits every such read).
func (c *client) streamEvents(ctx context.Context, id string, reveal bool, fn func(*apiEvent) error) (tail string, err error) {
	var q url.Values
	if reveal {
		q = url.Values{"reveal": {"true"}}
	}
	res, err := c.request(ctx, http.MethodGet, "/api/v1/sessions/"+url.PathEscape(id)+"/events", q, nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	tail, err = decodeEventStream(res.Body, fn)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("reading the events of session %s: %w", id, err)
	}
	return tail, err
}

// decodeEventStream walks {"events":[...], "error": "..."} token by token.
func decodeEventStream(r io.Reader, fn func(*apiEvent) error) (tail string, err error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	sawEvents := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return tail, err
		}
		key, _ := tok.(string)
		switch key {
		case "events":
			sawEvents = true
			if err := expectDelim(dec, '['); err != nil {
				return tail, err
			}
			for dec.More() {
				var ev apiEvent
				if err := dec.Decode(&ev); err != nil {
					return tail, err
				}
				if err := fn(&ev); err != nil {
					return tail, err
				}
			}
			if err := expectDelim(dec, ']'); err != nil {
				return tail, err
			}
		case "error":
			if err := dec.Decode(&tail); err != nil {
				return tail, err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return tail, err
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return tail, err
	}
	if !sawEvents {
		return tail, errors.New(`answer has no "events"`)
	}
	return tail, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("answer ends early (expected %q): %w", want, io.ErrUnexpectedEOF)
		}
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("unexpected %v in answer (expected %q)", tok, want)
	}
	return nil
}

func runReplay(e *env, args []string) int {
	fs := e.newFlagSet("replay", "replay ID [--speed N] [--max-rows N] [--reveal]")
	reveal := fs.Bool("reveal", false, "show the original values where masking changed them (auditors and admins; audited)")
	speed := fs.Float64("speed", 1, "playback speed: 2 is twice as fast; 0 prints without waiting")
	maxRows := fs.Int("max-rows", 100, "rows printed per result; the rest are counted")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "Usage: airlock replay ID [--speed N] [--max-rows N] [--reveal]")
		return exitUsage
	}
	if *speed < 0 || *maxRows < 0 {
		fmt.Fprintln(e.stderr, "airlock replay: --speed and --max-rows must not be negative")
		return exitUsage
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Recorded text is printed as text (escapes visible) and terminal output without what
	// would attack the viewer's terminal: see termsafe.
	p := &player{w: termsafe.Writer{W: e.stdout}, term: &termsafe.Filter{W: e.stdout}, maxRows: *maxRows}
	start := e.now()
	tail, err := c.streamEvents(ctx, pos[0], *reveal, func(ev *apiEvent) error {
		if *speed > 0 {
			// Wait until the event's time on the playback clock; measured against the start
			// so that time spent printing does not accumulate as drift.
			due := start.Add(time.Duration(float64(ev.OffsetNS) / *speed))
			if d := due.Sub(e.now()); d > 0 {
				e.sleep(ctx, d)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ev.RevealedRows != nil {
			ev.Rows = ev.RevealedRows
		}
		if ev.RevealErr != "" {
			fmt.Fprintf(e.stderr, "airlock: event %d: the original values could not be revealed: %s\n", ev.Seq, ev.RevealErr)
		}
		p.event(ev)
		return nil
	})
	p.flushTable()
	if ctx.Err() != nil {
		return exitFailure
	}
	if err != nil {
		return e.fail(err)
	}
	if tail != "" {
		fmt.Fprintf(e.stderr, "airlock: the recording could not be read to its end: %s\n", tail)
		return exitFailure
	}
	return exitOK
}

// player prints events. Rows are gathered (at most maxRows per result) and printed as a table
// when the result ends, like psql.
type player struct {
	w       io.Writer // lines: a termsafe.Writer
	term    io.Writer // a terminal's output: a termsafe.Filter
	maxRows int
	cols    []event.Column
	rows    [][]string
	omitted int64
	inTable bool
}

func stamp(ev *apiEvent) string {
	return fmt.Sprintf("[+%.3fs]", float64(ev.OffsetNS)/1e9)
}

func (p *player) linef(ev *apiEvent, format string, args ...any) {
	fmt.Fprintf(p.w, "%s %s\n", stamp(ev), fmt.Sprintf(format, args...))
}

func (p *player) event(ev *apiEvent) {
	switch event.Type(ev.Type) {
	case event.SessionStart:
		var d event.SessionStartData
		json.Unmarshal(ev.Data, &d)
		extra := []string{}
		if d.Role != "" {
			extra = append(extra, "role "+d.Role)
		}
		if d.Database != "" {
			extra = append(extra, "database "+d.Database)
		}
		if d.ApplicationName != "" {
			extra = append(extra, "application "+d.ApplicationName)
		}
		if d.TLS {
			extra = append(extra, "TLS "+d.TLSVersion)
		} else {
			extra = append(extra, "no TLS")
		}
		p.linef(ev, "session started %s: %s -> %s (%s) from %s [%s]", ev.Time.Local().Format("2006-01-02 15:04:05 MST"),
			d.User, d.Target, d.TargetType, d.ClientAddr, strings.TrimSpace(strings.Join(extra, ", ")))
	case event.Query:
		p.flushTable()
		var d event.QueryData
		json.Unmarshal(ev.Data, &d)
		label := "query"
		if d.Protocol == "extended" {
			label = "execute"
			if d.Statement != "" {
				label += " " + d.Statement
			}
		}
		text := strings.TrimSpace(d.Text)
		p.linef(ev, "%s: %s", label, strings.ReplaceAll(text, "\n", "\n             "))
		for i, v := range d.Params {
			fmt.Fprintf(p.w, "             $%d = %s\n", i+1, v.SQL())
		}
	case event.Columns:
		p.flushTable()
		var d event.ColumnsData
		json.Unmarshal(ev.Data, &d)
		p.cols, p.rows, p.omitted, p.inTable = d.Columns, nil, 0, true
	case event.Rows:
		p.inTable = true
		for _, r := range ev.Rows {
			if len(p.rows) >= p.maxRows {
				p.omitted++
				continue
			}
			row := make([]string, len(r))
			for i, v := range r {
				row[i] = formatValue(v)
			}
			p.rows = append(p.rows, row)
		}
		if ev.Rows == nil {
			// Rows the API could not render: count them from the event's data.
			var d event.RowsData
			json.Unmarshal(ev.Data, &d)
			p.omitted += int64(d.Count)
		}
		if ev.RowsErr != "" {
			fmt.Fprintf(p.w, "%s rows could not be decoded: %s\n", stamp(ev), ev.RowsErr)
		}
	case event.Result:
		var d event.ResultData
		json.Unmarshal(ev.Data, &d)
		p.flushTable()
		more := ""
		if d.Suspended {
			more = ", portal suspended"
		}
		p.linef(ev, "%s (%d rows, %s%s)", dash(d.Tag), d.Rows, formatDuration(time.Duration(d.DurationNS)), more)
	case event.Error, event.Notice:
		var d event.MessageData
		json.Unmarshal(ev.Data, &d)
		p.flushTable()
		sev := d.Severity
		if sev == "" {
			sev = strings.ToUpper(ev.Type)
		}
		src := ""
		if d.Source == "gateway" {
			src = " (from the gateway)"
		}
		p.linef(ev, "%s %s: %s%s", sev, d.Code, d.Message, src)
		if d.Detail != "" {
			fmt.Fprintf(p.w, "           DETAIL: %s\n", d.Detail)
		}
		if d.Hint != "" {
			fmt.Fprintf(p.w, "           HINT: %s\n", d.Hint)
		}
	case event.Notification:
		var d event.NotificationData
		json.Unmarshal(ev.Data, &d)
		p.linef(ev, "notification on %q from pid %d: %s", d.Channel, d.PID, d.Payload)
	case event.CopyIn, event.CopyOut:
		var d event.CopyData
		json.Unmarshal(ev.Data, &d)
		dir := "COPY data from client"
		if ev.Type == string(event.CopyOut) {
			dir = "COPY data to client"
		}
		switch {
		case d.Fail != "":
			p.linef(ev, "%s failed: %s", dir, d.Fail)
		case d.Done:
			p.linef(ev, "%s done", dir)
		default:
			p.linef(ev, "%s: %s", dir, formatBytes(int64(d.Bytes)))
		}
	case event.Cancel:
		var d event.CancelData
		json.Unmarshal(ev.Data, &d)
		state := "delivered"
		if !d.Delivered {
			state = "not delivered"
			if d.Error != "" {
				state += ": " + d.Error
			}
		}
		p.linef(ev, "cancel request (%s)", state)
	case event.SessionEnd:
		p.flushTable()
		var d event.SessionEndData
		json.Unmarshal(ev.Data, &d)
		msg := fmt.Sprintf("session ended: %s after %s; %d statements, %s from client, %s to client",
			dash(d.Reason), formatDuration(time.Duration(d.DurationNS)), d.Statements,
			formatBytes(d.BytesFromClient), formatBytes(d.BytesToClient))
		if d.Error != "" {
			msg += "; error: " + d.Error
		}
		p.linef(ev, "%s", msg)
	case event.Checkpoint:
		// Signatures are for `airlock verify`; a replay mentions only the seal at the end.
		var d event.CheckpointData
		json.Unmarshal(ev.Data, &d)
		if d.Final {
			p.linef(ev, "recording sealed: events 1-%d signed by key %s", d.Seq, d.KeyID)
		}
	case event.TerminalOutput:
		// A terminal's output is written as it came, escape sequences and all, so that the
		// viewer's terminal shows what the user's did (at the recorded size, ideally), less
		// the sequences that would make it do more than draw (termsafe.Filter).
		p.flushTable()
		io.WriteString(p.term, ev.raw())
	case event.TerminalInput, event.TerminalResize:
		// What was typed shows in the output (echo); sizes are the viewer's terminal's.
	case event.Exec:
		var d event.ExecData
		json.Unmarshal(ev.Data, &d)
		what := d.Kind
		if d.Command != "" {
			what += ": " + d.Command
		}
		if d.PTY {
			what += " (terminal)"
		}
		p.linef(ev, "channel %d: %s", d.Channel, what)
	case event.ExecExit:
		var d event.ExitData
		json.Unmarshal(ev.Data, &d)
		switch {
		case d.Status != nil:
			p.linef(ev, "channel %d: exit status %d", d.Channel, *d.Status)
		default:
			p.linef(ev, "channel %d: killed by signal %s", d.Channel, d.Signal)
		}
	case event.FileTransfer:
		var d event.FileTransferData
		json.Unmarshal(ev.Data, &d)
		msg := fmt.Sprintf("channel %d: sftp %s %s", d.Channel, d.Op, d.Path)
		if d.NewPath != "" {
			msg += " -> " + d.NewPath
		}
		if d.BytesRead > 0 || d.BytesWritten > 0 {
			msg += fmt.Sprintf(" (%s read, %s written)", formatBytes(d.BytesRead), formatBytes(d.BytesWritten))
		}
		if d.Status != "" && d.Status != "ok" {
			msg += ": " + d.Status
		}
		p.linef(ev, "%s", msg)
	case event.Forward:
		var d event.ForwardData
		json.Unmarshal(ev.Data, &d)
		if d.Closed {
			msg := fmt.Sprintf("channel %d: %s forward to %s closed (%s from client, %s to client)", d.Channel, d.Kind, d.Destination,
				formatBytes(d.BytesFromClient), formatBytes(d.BytesToClient))
			if d.Error != "" {
				msg += ": " + d.Error
			}
			p.linef(ev, "%s", msg)
		} else {
			p.linef(ev, "channel %d: %s forward to %s opened", d.Channel, d.Kind, d.Destination)
		}
	case event.Denied:
		var d event.DeniedData
		json.Unmarshal(ev.Data, &d)
		p.linef(ev, "denied %s %s: %s", d.Request, d.Detail, d.Reason)
	case event.Audit:
		var d event.AuditData
		json.Unmarshal(ev.Data, &d)
		p.linef(ev, "%s", auditLine(ev.Time, d))
	default:
		p.linef(ev, "%s %s", ev.Type, string(ev.Data))
	}
}

// raw is the bytes of a copy or terminal event.
func (ev *apiEvent) raw() string {
	switch {
	case ev.Text != nil:
		return *ev.Text
	case ev.Base64 != nil:
		b, _ := base64.StdEncoding.DecodeString(*ev.Base64)
		return string(b)
	}
	return ""
}

// auditLine renders an audit entry on one line:
//
//	2026-03-01 10:00:00 UTC recording.read ok by carol: s-alice from 10.0.0.1:5000 (owner=alice role=auditor route=events)
func auditLine(t time.Time, d event.AuditData) string {
	actor := d.Actor
	if actor == "" {
		actor = "(unauthenticated)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s by %s", t.Local().Format("2006-01-02 15:04:05 MST"), dash(d.Action), dash(d.Outcome), actor)
	if d.Subject != "" {
		b.WriteString(": " + d.Subject)
	}
	if d.Client != "" {
		b.WriteString(" from " + d.Client)
	}
	if len(d.Detail) > 0 {
		kv := make([]string, 0, len(d.Detail))
		for _, k := range slices.Sorted(maps.Keys(d.Detail)) {
			if v := d.Detail[k]; v != "" {
				if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == '=' || !unicode.IsPrint(r) }) {
					v = strconv.Quote(v) // one line, whatever the value holds
				}
				kv = append(kv, k+"="+v)
			}
		}
		if len(kv) > 0 {
			b.WriteString(" (" + strings.Join(kv, " ") + ")")
		}
	}
	return b.String()
}

// flushTable prints gathered rows as a psql-like aligned table.
func (p *player) flushTable() {
	if !p.inTable {
		return
	}
	p.inTable = false
	n := len(p.cols)
	for _, r := range p.rows {
		n = max(n, len(r))
	}
	if n == 0 {
		return
	}
	headers := make([]string, n)
	right := make([]bool, n)
	widths := make([]int, n)
	for i := range headers {
		if i < len(p.cols) {
			headers[i] = termsafe.Visible(p.cols[i].Name)
			right[i] = numericOID(p.cols[i].OID)
		} else {
			headers[i] = fmt.Sprintf("?column%d?", i+1)
		}
		widths[i] = utf8.RuneCountInString(headers[i])
	}
	for _, r := range p.rows {
		for i, v := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(v))
		}
	}
	pad := func(s string, w int, alignRight bool) string {
		sp := strings.Repeat(" ", w-utf8.RuneCountInString(s))
		if alignRight {
			return sp + s
		}
		return s + sp
	}
	var b strings.Builder
	for i, h := range headers {
		if i > 0 {
			b.WriteString("|")
		}
		// psql centres headers; left-aligned reads as well and is simpler.
		b.WriteString(" " + pad(h, widths[i], false) + " ")
	}
	b.WriteString("\n")
	for i := range headers {
		if i > 0 {
			b.WriteString("+")
		}
		b.WriteString(strings.Repeat("-", widths[i]+2))
	}
	b.WriteString("\n")
	for _, r := range p.rows {
		for i := range headers {
			v := ""
			if i < len(r) {
				v = r[i]
			}
			if i > 0 {
				b.WriteString("|")
			}
			b.WriteString(" " + pad(v, widths[i], right[i]) + " ")
		}
		b.WriteString("\n")
	}
	if p.omitted > 0 {
		fmt.Fprintf(&b, "(%d more rows not shown; --max-rows %d)\n", p.omitted, p.maxRows)
	}
	io.WriteString(p.w, indent(b.String()))
	p.rows, p.omitted = nil, 0
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString("    " + strings.TrimRight(l, " \n") + "\n")
		}
	}
	return b.String()
}

// numericOID reports the PostgreSQL number types, right-aligned like psql does.
func numericOID(oid uint32) bool {
	switch oid {
	case 20, 21, 23, 26, 700, 701, 790, 1700:
		return true
	}
	return false
}

// formatValue renders an API value: a string (controls escaped: see termsafe.Visible), null
// (shown empty, as psql does), or {"hex"}.
func formatValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return termsafe.Visible(strings.ReplaceAll(s, "\n", `\n`))
	}
	var h struct{ Hex string }
	if json.Unmarshal(v, &h) == nil && h.Hex != "" {
		return `\x` + h.Hex
	}
	return ""
}
