package mysql

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
)

// scriptedRelay is a relay whose target answers with the packets of upstream, in order, and
// whose client output is captured; specs are its masking specs (none: no masker).
func scriptedRelay(t *testing.T, upstreamData []byte, specs ...string) (*relay, *scriptConn) {
	t.Helper()
	e := testEngine(t)
	cl := &scriptConn{in: bytes.NewReader(nil)}
	c := &client{conn: cl, r: bufio.NewReader(cl), target: "my", id: &auth.Identity{User: "alice"}}
	up := &upstream{conn: &scriptConn{in: bytes.NewReader(nil)}}
	var mk *masker
	if len(specs) > 0 {
		m, err := masking.New(specs)
		if err != nil {
			t.Fatal(err)
		}
		mk = newMasker(m)
	}
	r := newRelay(e, e.d.Log, c, up, nil, mk, nil, false)
	r.ur = bufio.NewReader(bytes.NewReader(upstreamData))
	return r, cl
}

func mustField(t *testing.T, p []byte) *gomysql.Field {
	t.Helper()
	f, err := parseField(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func lenencStr(s string) []byte { return gomysql.PutLengthEncodedString([]byte(s)) }

// clientPackets splits what the client received into payloads.
func clientPackets(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < headerLen {
			t.Fatalf("client got a truncated header: %x", b)
		}
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if len(b) < headerLen+n {
			t.Fatalf("client got a truncated packet: %x", b)
		}
		out = append(out, b[headerLen:headerLen+n])
		b = b[headerLen+n:]
	}
	return out
}

const card = "4111 1111 1111 1111"

// TestCursorFetchUsesExecuteColumns: MariaDB's PREPARE of `select ?, card ...` reports the
// parameter's column as type NULL; the EXECUTE that opens a cursor reports it as a string, and
// the rows COM_STMT_FETCH returns follow the execute's layout. They must be parsed, and masked,
// with that layout.
func TestCursorFetchUsesExecuteColumns(t *testing.T) {
	eof := func(status uint16) []byte { return []byte{0xfe, 0, 0, byte(status), byte(status >> 8)} }
	execResp := frames(1, []byte{2}, fieldDef("", "?", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0),
		fieldDef("t", "card", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0),
		eof(gomysql.SERVER_STATUS_AUTOCOMMIT|gomysql.SERVER_STATUS_CURSOR_EXISTS))
	fetchResp := frames(1, appendBinaryRow(nil, [][]byte{lenencStr("x"), lenencStr(card)}),
		eof(gomysql.SERVER_STATUS_AUTOCOMMIT|gomysql.SERVER_STATUS_LAST_ROW_SEND))
	r, cl := scriptedRelay(t, append(execResp, fetchResp...), "credit_card")
	r.stmts[1] = &stmtInfo{sql: "select ?, card from t", params: 1, columns: []*gomysql.Field{
		mustField(t, fieldDef("", "?", gomysql.MYSQL_TYPE_NULL, 63, 0)),
		mustField(t, fieldDef("t", "card", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0)),
	}}
	exec := []byte{gomysql.COM_STMT_EXECUTE, 1, 0, 0, 0, 1 /* CURSOR_TYPE_READ_ONLY */, 1, 0, 0, 0, 0, 1, gomysql.MYSQL_TYPE_VAR_STRING, 0}
	exec = append(exec, lenencStr("x")...)
	if st, done := r.command(exec); done {
		t.Fatalf("execute ended the session: %v", st)
	}
	if st, done := r.command([]byte{gomysql.COM_STMT_FETCH, 1, 0, 0, 0, 10, 0, 0, 0}); done {
		t.Fatalf("fetch ended the session: %v", st)
	}
	out := cl.out.Bytes()
	if bytes.Contains(out, []byte(card)) {
		t.Fatalf("the card number reached the client unmasked: %q", out)
	}
	if !bytes.Contains(out, []byte("**** **** **** 1111")) {
		t.Fatalf("the client did not get the masked card number: %q", out)
	}
}

// TestUnparsableRowFailsClosed: a row masking applies to that cannot be parsed never reaches the
// client; an ERR takes its place, the rest of the response is swallowed, and the session goes on.
func TestUnparsableRowFailsClosed(t *testing.T) {
	eof := []byte{0xfe, 0, 0, 2, 0}
	// Two rows laid out as (string, string) for columns the relay believes are (NULL, string).
	rows := frames(1, appendBinaryRow(nil, [][]byte{lenencStr("x"), lenencStr(card)}),
		appendBinaryRow(nil, [][]byte{lenencStr("y"), lenencStr(card)}), eof)
	ok := frames(1, okPacket(gomysql.SERVER_STATUS_AUTOCOMMIT))
	fields := []*gomysql.Field{
		mustField(t, fieldDef("", "?", gomysql.MYSQL_TYPE_NULL, 63, 0)),
		mustField(t, fieldDef("t", "card", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0)),
	}
	for _, tt := range []struct {
		name  string
		specs []string
		raw   bool // the row is forwarded as the target sent it
	}{
		{"masking", []string{"credit_card"}, false},
		{"no masking", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, cl := scriptedRelay(t, append(append([]byte{}, rows...), ok...), tt.specs...)
			r.stmts[1] = &stmtInfo{sql: "select ?, card from t", params: 1, cursor: fields}
			if st, done := r.command([]byte{gomysql.COM_STMT_FETCH, 1, 0, 0, 0, 10, 0, 0, 0}); done {
				t.Fatalf("fetch ended the session: %v", st)
			}
			pkts := clientPackets(t, cl.out.Bytes())
			if tt.raw {
				if len(pkts) != 3 || !bytes.Contains(pkts[0], []byte(card)) {
					t.Fatalf("without masking, the rows should pass as they are: %q", pkts)
				}
				return
			}
			if bytes.Contains(cl.out.Bytes(), []byte(card)) {
				t.Fatalf("an unparsable row reached the client raw: %q", pkts)
			}
			if len(pkts) != 1 {
				t.Fatalf("client got %d packets, want only the ERR: %q", len(pkts), pkts)
			}
			code, _, msg, isErr := decodeErr(pkts[0])
			if !isErr || code != codeMasking || !strings.Contains(msg, "could not parse a result row") {
				t.Fatalf("client got %q, want an ERR %d about the row", pkts[0], codeMasking)
			}
			// The rest of the response was swallowed: the next command gets its own answer.
			cl.out.Reset()
			if st, done := r.command([]byte{gomysql.COM_PING}); done {
				t.Fatalf("ping ended the session: %v", st)
			}
			if pkts := clientPackets(t, cl.out.Bytes()); len(pkts) != 1 || pkts[0][0] != gomysql.OK_HEADER {
				t.Fatalf("ping after the withheld result got %q, want its OK", pkts)
			}
		})
	}
}

// TestRelayStartsWithHandshakeStatus: the relay reads the first statement in the sql_mode the
// handshake reported. With NO_BACKSLASH_ESCAPES, 'x\' is a whole string and what follows it is
// code, so this DELETE holds for every row.
func TestRelayStartsWithHandshakeStatus(t *testing.T) {
	sql := `DELETE FROM t WHERE a = 'x\' OR 1=1 -- '`
	for _, tt := range []struct {
		name    string
		status  uint16
		refused bool
	}{
		{"no_backslash_escapes", gomysql.SERVER_STATUS_AUTOCOMMIT | gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED, true},
		{"backslash escapes", gomysql.SERVER_STATUS_AUTOCOMMIT, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := testEngine(t)
			cl := &scriptConn{in: bytes.NewReader(nil)}
			c := &client{conn: cl, r: bufio.NewReader(cl), target: "my", id: &auth.Identity{User: "alice"}}
			upc := &scriptConn{in: bytes.NewReader(nil)}
			up := &upstream{conn: upc, status: tt.status}
			r := newRelay(e, e.d.Log, c, up, nil, nil, newGuardrails([]string{"deny:destructive"}, nil), false)
			r.ctx = context.Background()
			r.ur = bufio.NewReader(bytes.NewReader(frames(1, okPacket(gomysql.SERVER_STATUS_AUTOCOMMIT))))
			if st, done := r.command(append([]byte{gomysql.COM_QUERY}, sql...)); done {
				t.Fatalf("the statement ended the session: %v", st)
			}
			pkts := clientPackets(t, cl.out.Bytes())
			code, _, _, isErr := decodeErr(pkts[0])
			refused := isErr && code == codeDeniedByPolicy
			if refused != tt.refused || (refused && upc.out.Len() > 0) {
				t.Fatalf("client got %q, target got %q; want refused %v", pkts, upc.out.Bytes(), tt.refused)
			}
		})
	}
}

// TestWithheldResultSwallowsLocalInfile: after a withheld result, a LOAD DATA LOCAL request
// later in the same multi-statement response never reaches the client (which has its ERR and
// sends no file); the target gets an empty file.
func TestWithheldResultSwallowsLocalInfile(t *testing.T) {
	const more = gomysql.SERVER_STATUS_AUTOCOMMIT | gomysql.SERVER_MORE_RESULTS_EXISTS
	resp := frames(1, []byte{2}, fieldDef("", "n", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0),
		fieldDef("t", "card", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0), []byte{0xfe, 0, 0, byte(more), byte(more >> 8)},
		appendTextRow(nil, [][]byte{[]byte(card)}), // one value for two columns
		[]byte{0xfe, 0, 0, byte(more), byte(more >> 8)},
		append([]byte{0xfb}, "/tmp/f"...))
	resp = append(resp, frames(9, okPacket(gomysql.SERVER_STATUS_AUTOCOMMIT))...)
	r, cl := scriptedRelay(t, resp, "credit_card")
	r.infile = true
	if st, done := r.command(append([]byte{gomysql.COM_QUERY}, "select 1, card from t; load data local infile '/tmp/f' into table t"...)); done {
		t.Fatalf("the query ended the session: %v", st)
	}
	pkts := clientPackets(t, cl.out.Bytes())
	last := pkts[len(pkts)-1]
	if code, _, _, isErr := decodeErr(last); !isErr || code != codeMasking || bytes.Contains(cl.out.Bytes(), []byte("/tmp/f")) {
		t.Fatalf("client got %q, want the columns then ERR %d, and no file request", pkts, codeMasking)
	}
	sent := r.up.conn.(*scriptConn).out.Bytes()
	if len(sent) < headerLen || !bytes.Equal(sent[len(sent)-headerLen:len(sent)-1], []byte{0, 0, 0}) {
		t.Fatalf("target got %x, want the query then an empty file packet", sent)
	}
}

// timeline is the order in which the store got events and the target got bytes.
type timeline struct {
	mu       sync.Mutex
	recorded int    // bytes of copy.in events the store holds
	sent     int    // bytes of the file the target got
	early    string // what was sent before it was recorded
	events   []event.Type
}

type timelineStore struct {
	store.Recordings
	tl *timeline
}

func (s timelineStore) Create(context.Context, store.Session) (store.Writer, error) {
	return timelineWriter{s.tl}, nil
}

type timelineWriter struct{ tl *timeline }

func (w timelineWriter) Append(evs ...*event.Event) error {
	w.tl.mu.Lock()
	defer w.tl.mu.Unlock()
	for _, e := range evs {
		w.tl.events = append(w.tl.events, e.Type)
		if e.Type == event.CopyIn {
			w.tl.recorded += len(e.Raw)
		}
	}
	return nil
}
func (timelineWriter) Sync() error                                 { return nil }
func (timelineWriter) End(context.Context, store.SessionEnd) error { return nil }

// fileTarget is a target connection that counts the file bytes it is sent (every packet after
// the first, which is the command) and checks the recording already holds them.
type fileTarget struct {
	scriptConn
	tl     *timeline
	writes int
}

func (c *fileTarget) Write(b []byte) (int, error) {
	c.writes++
	if c.writes > 1 {
		c.tl.mu.Lock()
		for p := b; len(p) >= headerLen; {
			n := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
			c.tl.sent += n
			p = p[headerLen+n:]
		}
		if c.tl.sent > c.tl.recorded && c.tl.early == "" {
			c.tl.early = fmt.Sprintf("sent %d, recorded %d", c.tl.sent, c.tl.recorded)
		}
		c.tl.mu.Unlock()
	}
	return c.scriptConn.Write(b)
}

// TestLocalInfileRecordedBeforeForwarded: the file a client sends with LOAD DATA LOCAL INFILE
// reaches the target only once the recording holds it; what a client sends before it goes away
// mid-file never reaches the target.
func TestLocalInfileRecordedBeforeForwarded(t *testing.T) {
	const name = "/tmp/rows.tsv"
	chunk := bytes.Repeat([]byte("1\tabc\n"), 1000)
	for _, tt := range []struct {
		name   string
		chunks int
		end    bool // the client sends the closing empty packet
	}{
		{"whole file", 3, true},
		{"client gone mid-file", 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tl := &timeline{}
			rc := &recorder.Recorder{Store: timelineStore{tl: tl}}
			rec, err := rc.Start(context.Background(), recorder.Info{Protocol: Name, Target: "my", User: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			var in []byte
			seq := byte(2)
			for i := 0; i < tt.chunks; i++ {
				in = appendPacket(in, &seq, chunk)
			}
			if tt.end {
				in = appendPacket(in, &seq, nil)
			}
			e := testEngine(t)
			cl := &scriptConn{in: bytes.NewReader(in)}
			c := &client{conn: cl, r: bufio.NewReader(cl), target: "my", id: &auth.Identity{User: "alice"}}
			up := &fileTarget{tl: tl}
			r := newRelay(e, e.d.Log, c, &upstream{conn: up}, rec, nil, nil, true)
			r.cr = bufio.NewReader(cl)
			r.ur = bufio.NewReader(bytes.NewReader(append(frames(1, append([]byte{0xfb}, name...)),
				frames(byte(tt.chunks+3), okPacket(gomysql.SERVER_STATUS_AUTOCOMMIT))...)))
			st, done := r.command(append([]byte{gomysql.COM_QUERY}, "LOAD DATA LOCAL INFILE '"+name+"' INTO TABLE t"...))
			if tl.early != "" {
				t.Fatalf("the target got file bytes the recording did not hold yet (%s)", tl.early)
			}
			if !tt.end {
				if !done || st.reason != "client_disconnected" {
					t.Fatalf("client gone: got %v, %v", st, done)
				}
				if tl.sent != 0 {
					t.Fatalf("the target got %d bytes of a file the client never finished, unrecorded", tl.sent)
				}
				return
			}
			if done {
				t.Fatalf("the load ended the session: %v", st)
			}
			if want := tt.chunks * len(chunk); tl.sent != want || tl.recorded != want {
				t.Fatalf("target got %d bytes, recording holds %d, want %d", tl.sent, tl.recorded, want)
			}
		})
	}
}

func TestCommandSQL(t *testing.T) {
	tests := []struct {
		p    []byte
		want string
	}{
		{[]byte{gomysql.COM_PROCESS_KILL, 5, 0, 0, 0}, "KILL 5"},
		{[]byte{gomysql.COM_PROCESS_KILL, 0x01, 0x02, 0, 0}, "KILL 513"},
		{[]byte{gomysql.COM_PROCESS_KILL, 5}, "COM_PROCESS_KILL [5]"},
		{[]byte{gomysql.COM_REFRESH, 0x04}, "FLUSH TABLES"},
		{[]byte{gomysql.COM_REFRESH, 0x06}, "FLUSH LOGS; FLUSH TABLES"},
		{[]byte{gomysql.COM_REFRESH, 0x81}, "FLUSH PRIVILEGES; RESET MASTER"},
		{[]byte{gomysql.COM_REFRESH, 0}, "COM_REFRESH [0]"},
	}
	for _, tt := range tests {
		if got := commandSQL(tt.p); got != tt.want {
			t.Errorf("commandSQL(%v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestFieldListSQL(t *testing.T) {
	tests := []struct {
		p      string
		noBack bool
		want   string
	}{
		{"t\x00", false, "SHOW COLUMNS FROM `t`"},
		{"t", false, "SHOW COLUMNS FROM `t`"},
		{"we`ird\x00", false, "SHOW COLUMNS FROM `we``ird`"},
		{"t\x00c%", false, "SHOW COLUMNS FROM `t` LIKE 'c%'"},
		{"t\x00it's\\", false, `SHOW COLUMNS FROM ` + "`t`" + ` LIKE 'it''s\\'`},
		{"t\x00it's\\", true, `SHOW COLUMNS FROM ` + "`t`" + ` LIKE 'it''s\'`},
	}
	for _, tt := range tests {
		if got := fieldListSQL([]byte(tt.p), tt.noBack); got != tt.want {
			t.Errorf("fieldListSQL(%q) = %q, want %q", tt.p, got, tt.want)
		}
	}
}
