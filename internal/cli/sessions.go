package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/termsafe"
)

func init() {
	register("sessions", "list recorded sessions, or show one", func(args []string) int {
		return runSessions(osEnv(), args)
	})
}

// session is a session as the API returns it.
type session = api.Session

const sessionsUsage = `sessions list [--from T] [--to T] [--user U] [--target T] [--type T] [--limit N] [--json]
       airlock sessions show ID [--json] [--reveal]
       airlock sessions hold|release ID [--reason R]     (admins; legal hold against retention)

T is an RFC 3339 time (2026-01-02T15:04:05Z) or a duration meaning that long ago (2h, 30m).`

func runSessions(e *env, args []string) int {
	return dispatch(e, "sessions", sessionsUsage, args, map[string]func(*env, []string) int{
		"list":    runSessionsList,
		"ls":      runSessionsList,
		"show":    runSessionsShow,
		"get":     runSessionsShow,
		"hold":    func(e *env, args []string) int { return runSessionsHold(e, args, true) },
		"release": func(e *env, args []string) int { return runSessionsHold(e, args, false) },
	})
}

// parseWhen accepts RFC 3339 or a duration meaning that long before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration ago (2h)", s)
	}
	return now.Add(-d), nil
}

func runSessionsList(e *env, args []string) int {
	fs := e.newFlagSet("sessions list", sessionsUsage)
	from := fs.String("from", "", "sessions active at or after this time (RFC 3339, or a duration ago like 2h)")
	to := fs.String("to", "", "sessions started before this time (RFC 3339, or a duration ago)")
	user := fs.String("user", "", "only this user's sessions")
	tgt := fs.String("target", "", "only sessions to this target")
	typ := fs.String("type", "", "only sessions of this type (postgres, ...)")
	limit := fs.Int("limit", 0, "at most this many sessions (0: the gateway's default)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock sessions list: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	q := url.Values{}
	for _, p := range []struct{ name, v string }{{"from", *from}, {"to", *to}} {
		if p.v == "" {
			continue
		}
		t, err := parseWhen(p.v, e.now())
		if err != nil {
			fmt.Fprintf(e.stderr, "airlock sessions list: --%s: %v\n", p.name, err)
			return exitUsage
		}
		q.Set(p.name, t.UTC().Format(time.RFC3339Nano))
	}
	for k, v := range map[string]string{"user": *user, "target": *tgt, "type": *typ} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *limit < 0 {
		fmt.Fprintln(e.stderr, "airlock sessions list: --limit must not be negative")
		return exitUsage
	} else if *limit > 0 {
		q.Set("limit", fmt.Sprint(*limit))
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	var ans struct {
		Sessions []session `json:"sessions"`
	}
	var raw []byte
	if err := c.getJSON(context.Background(), "/api/v1/sessions", q, &ans, &raw); err != nil {
		return e.fail(err)
	}
	if *asJSON {
		if err := printJSON(e.stdout, raw); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if len(ans.Sessions) == 0 {
		fmt.Fprintln(e.stderr, "No sessions.")
		return exitOK
	}
	tw := tabwriter.NewWriter(termsafe.Writer{W: e.stdout}, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTARGET\tTYPE\tSTARTED\tDURATION\tEVENTS\tEND REASON")
	for _, s := range ans.Sessions {
		dur, events := "active", "-"
		if s.EndedAt != nil {
			dur = formatDuration(s.EndedAt.Sub(s.StartedAt))
			events = fmt.Sprint(s.Events)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.User, s.Target, s.Type,
			s.StartedAt.Local().Format("2006-01-02 15:04:05"), dur, events, dash(s.EndReason))
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatDuration rounds d for people: 412µs, 850ms, 12.3s, 4m05s, 2h03m.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// summary is what sessions show counts over a session's events.
type summary struct {
	Statements      int64  `json:"statements"`
	Errors          int64  `json:"errors"`
	Notices         int64  `json:"notices"`
	Rows            int64  `json:"rows"`
	CopyBytes       int64  `json:"copy_bytes"`
	BytesFromClient *int64 `json:"bytes_from_client,omitempty"`
	BytesToClient   *int64 `json:"bytes_to_client,omitempty"`
	EndError        string `json:"end_error,omitempty"`
	RecordingError  string `json:"recording_error,omitempty"`
}

func summarize(c *client, id string) (summary, error) {
	var s summary
	tail, err := c.streamEvents(context.Background(), id, false, func(ev *apiEvent) error {
		switch event.Type(ev.Type) {
		case event.Query:
			s.Statements++
		case event.Error:
			s.Errors++
		case event.Notice:
			s.Notices++
		case event.Result:
			var r event.ResultData
			if json.Unmarshal(ev.Data, &r) == nil {
				s.Rows += r.Rows
			}
		case event.CopyIn, event.CopyOut:
			var d event.CopyData
			if json.Unmarshal(ev.Data, &d) == nil {
				s.CopyBytes += int64(d.Bytes)
			}
		case event.SessionEnd:
			var d event.SessionEndData
			if json.Unmarshal(ev.Data, &d) == nil {
				s.BytesFromClient, s.BytesToClient = &d.BytesFromClient, &d.BytesToClient
				s.EndError = d.Error
				if d.Statements > s.Statements {
					s.Statements = d.Statements
				}
			}
		}
		return nil
	})
	s.RecordingError = tail
	return s, err
}

// runSessionsHold puts a session on legal hold (retention never expires it) or releases it.
func runSessionsHold(e *env, args []string, hold bool) int {
	verb := "release"
	if hold {
		verb = "hold"
	}
	fs := e.newFlagSet("sessions "+verb, "sessions "+verb+" ID [--reason R] [--json]")
	reason := fs.String("reason", "", "why (kept in the audit log)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	arg, c, code, ok := e.oneArg(fs, args, "sessions "+verb+" ID [--reason R] [--json]")
	if !ok {
		return code
	}
	res, err := c.request(context.Background(), "POST", "/api/v1/sessions/"+url.PathEscape(arg)+"/hold", nil,
		map[string]any{"hold": hold, "reason": *reason})
	if err != nil {
		return e.fail(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return e.fail(err)
	}
	if *asJSON {
		e.stdout.Write(b)
		return exitOK
	}
	if hold {
		fmt.Fprintf(e.stdout, "Session %s is on legal hold: retention will not expire it.\n", arg)
	} else {
		fmt.Fprintf(e.stdout, "Session %s is released from legal hold.\n", arg)
	}
	return exitOK
}

func runSessionsShow(e *env, args []string) int {
	fs := e.newFlagSet("sessions show", "sessions show ID [--json] [--reveal]")
	asJSON := fs.Bool("json", false, "print JSON: the API's session and the summary")
	reveal := fs.Bool("reveal", false, "also print the originals of masked rows, COPY output, errors, notices and notifications (auditors and admins; audited)")
	arg, c, code, ok := e.oneArg(fs, args, "sessions show ID [--json] [--reveal]")
	if !ok {
		return code
	}
	var ans struct {
		Session session `json:"session"`
	}
	var raw []byte
	if err := c.getJSON(context.Background(), "/api/v1/sessions/"+url.PathEscape(arg), nil, &ans, &raw); err != nil {
		return e.fail(err)
	}
	sum, err := summarize(c, arg)
	if err != nil {
		return e.fail(err)
	}
	var revealed []revealedRows
	if *reveal {
		if revealed, err = revealRows(c, arg); err != nil {
			return e.fail(err)
		}
	}
	if *asJSON {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return e.fail(err)
		}
		obj["summary"], _ = json.Marshal(sum)
		if *reveal {
			if revealed == nil {
				revealed = []revealedRows{}
			}
			obj["revealed"], _ = json.Marshal(revealed)
		}
		b, _ := json.Marshal(obj)
		if err := printJSON(e.stdout, b); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	// Recorded text is printed with its controls escaped (termsafe.Visible).
	out := termsafe.Writer{W: e.stdout}
	printSession(out, ans.Session, sum)
	if *reveal {
		printRevealed(out, revealed)
	}
	if sum.RecordingError != "" {
		fmt.Fprintf(e.stderr, "airlock: the recording could not be read to its end: %s\n", sum.RecordingError)
		return exitFailure
	}
	return exitOK
}

// revealedRows is one event's originals, as sessions show --reveal prints them: a rows event's
// rows, an error's, notice's or notification's data, or copy.out's bytes.
type revealedRows struct {
	Seq      uint64              `json:"seq"`
	Type     string              `json:"type"`
	OffsetNS int64               `json:"offset_ns"`
	Columns  []event.Column      `json:"columns,omitempty"`
	Rows     [][]json.RawMessage `json:"rows,omitempty"`
	Data     json.RawMessage     `json:"data,omitempty"`
	Text     *string             `json:"text,omitempty"`
	Base64   *string             `json:"base64,omitempty"`
	Error    string              `json:"error,omitempty"`
}

// revealRows reads the session with reveal=true and keeps the events whose content was masked,
// with their originals.
func revealRows(c *client, id string) ([]revealedRows, error) {
	var out []revealedRows
	var cols []event.Column
	tail, err := c.streamEvents(context.Background(), id, true, func(ev *apiEvent) error {
		switch {
		case event.Type(ev.Type) == event.Columns:
			var d event.ColumnsData
			json.Unmarshal(ev.Data, &d)
			cols = d.Columns
		case ev.RevealedRows != nil:
			out = append(out, revealedRows{Seq: ev.Seq, Type: ev.Type, OffsetNS: ev.OffsetNS, Columns: cols, Rows: ev.RevealedRows, Error: ev.RevealErr})
		case ev.RevealedData != nil || ev.RevealedText != nil || ev.RevealedBase64 != nil || ev.RevealErr != "":
			out = append(out, revealedRows{Seq: ev.Seq, Type: ev.Type, OffsetNS: ev.OffsetNS, Data: ev.RevealedData,
				Text: ev.RevealedText, Base64: ev.RevealedBase64, Error: ev.RevealErr})
		}
		return nil
	})
	if err == nil && tail != "" {
		err = fmt.Errorf("the recording could not be read to its end: %s", tail)
	}
	return out, err
}

func printRevealed(w io.Writer, revealed []revealedRows) {
	if len(revealed) == 0 {
		fmt.Fprintln(w, "\nRevealed: nothing was masked in this recording.")
		return
	}
	fmt.Fprintln(w, "\nRevealed: the originals of masked values (this read is audited).")
	for _, r := range revealed {
		ev := &apiEvent{Seq: r.Seq, OffsetNS: r.OffsetNS}
		if r.Error != "" {
			fmt.Fprintf(w, "%s event %d (%s): could not be revealed: %s\n", stamp(ev), r.Seq, r.Type, r.Error)
			continue
		}
		fmt.Fprintf(w, "%s event %d (%s):\n", stamp(ev), r.Seq, r.Type)
		switch {
		case r.Data != nil:
			fmt.Fprintf(w, "    %s\n", r.Data)
			continue
		case r.Text != nil:
			for _, l := range strings.Split(strings.TrimSuffix(*r.Text, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", l) // as sent: no trimming
			}
			continue
		case r.Base64 != nil:
			fmt.Fprintf(w, "    (binary, base64) %s\n", *r.Base64)
			continue
		}
		p := &player{w: w, maxRows: math.MaxInt, cols: r.Columns, inTable: true}
		for _, row := range r.Rows {
			vals := make([]string, len(row))
			for i, v := range row {
				vals[i] = formatValue(v)
			}
			p.rows = append(p.rows, vals)
		}
		p.flushTable()
	}
}

func printSession(w io.Writer, s session, sum summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Session", s.ID)
	row("User", s.User)
	row("Target", fmt.Sprintf("%s (%s)", s.Target, s.Type))
	row("Client", dash(s.ClientAddr))
	row("Started", s.StartedAt.Local().Format("2006-01-02 15:04:05.000 MST"))
	if s.EndedAt != nil {
		row("Ended", fmt.Sprintf("%s (%s, after %s)", s.EndedAt.Local().Format("2006-01-02 15:04:05.000 MST"),
			dash(s.EndReason), formatDuration(s.EndedAt.Sub(s.StartedAt))))
		row("Events", fmt.Sprint(s.Events))
		row("Chain head", dash(s.Head))
	} else {
		row("Status", "active")
	}
	// Always shown: 0 is what says that a best-effort recording kept everything.
	row("Dropped events", fmt.Sprint(s.DroppedEvents))
	row("Statements", fmt.Sprint(sum.Statements))
	row("Rows returned", fmt.Sprint(sum.Rows))
	row("Errors", fmt.Sprint(sum.Errors))
	if sum.Notices > 0 {
		row("Notices", fmt.Sprint(sum.Notices))
	}
	if sum.CopyBytes > 0 {
		row("COPY data", formatBytes(sum.CopyBytes))
	}
	if sum.BytesFromClient != nil {
		row("Bytes", fmt.Sprintf("%s from client, %s to client", formatBytes(*sum.BytesFromClient), formatBytes(*sum.BytesToClient)))
	}
	if sum.EndError != "" {
		row("End error", sum.EndError)
	}
	tw.Flush()
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
