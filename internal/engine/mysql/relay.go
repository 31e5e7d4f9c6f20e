package mysql

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
)

const (
	// batchBytes bounds what the relay holds of a response before it records, commits and
	// forwards it: memory stays flat whatever a result's size.
	batchBytes   = 256 << 10
	clientBufSz  = 16 << 10
	upstreamBufS = 64 << 10
	// maxLongData bounds what the recording keeps of one parameter sent with
	// COM_STMT_SEND_LONG_DATA (the target gets all of it).
	maxLongData = 64 << 10
)

// sessionStatus are the server status flags that describe the session rather than a result:
// what the connection phase's final OK passes on of the target's.
const sessionStatus = gomysql.SERVER_STATUS_AUTOCOMMIT | gomysql.SERVER_STATUS_IN_TRANS |
	gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED | serverStatusInTransReadonly

// serverStatusInTransReadonly is SERVER_STATUS_IN_TRANS_READONLY, which go-mysql does not name.
const serverStatusInTransReadonly = 0x2000

// okPacket is an OK packet's payload with no rows, no insert id and no warnings.
func okPacket(status uint16) []byte {
	return []byte{gomysql.OK_HEADER, 0, 0, byte(status), byte(status >> 8), 0, 0}
}

type gomysqlError = gomysql.MyError

// stmtInfo is a prepared statement the target acknowledged.
type stmtInfo struct {
	sql     string
	params  int
	columns []*gomysql.Field // of its result, from COM_STMT_PREPARE (re-sent by each execute)
	// cursor is the column layout of the cursor the last execute opened, as that execute sent
	// it: COM_STMT_FETCH rows follow it, not the prepare's (MariaDB reports a parameter's column
	// as type NULL at prepare time and as a string at execute time).
	cursor []*gomysql.Field
	types  []byte         // parameter types (2 bytes each) from the last execute that bound them
	long   map[int][]byte // parameters sent with COM_STMT_SEND_LONG_DATA since the last execute
}

// What a command's response looks like.
type respKind int

const (
	respNone      respKind = iota
	respOK                 // one OK, ERR or EOF packet (COM_PING, COM_INIT_DB, COM_STMT_RESET, ...)
	respQuery              // results of COM_QUERY: OK | ERR | LOCAL INFILE request | result sets
	respExecute            // results of COM_STMT_EXECUTE: like respQuery, binary rows
	respFetch              // rows of COM_STMT_FETCH, then EOF
	respPrepare            // COM_STMT_PREPARE: PREPARE_OK and definitions, or ERR
	respFieldList          // COM_FIELD_LIST: column definitions, then EOF
	respOnePacket          // COM_STATISTICS: one string
)

type relay struct {
	e      *Engine
	log    *slog.Logger
	c      *client
	cr     *bufio.Reader
	up     *upstream
	ur     *bufio.Reader
	rec    *recorder.Session
	limit  int
	ctx    context.Context
	guard  *guardrails // nil: no guardrails for this session
	masker *masker     // nil: nothing to mask
	sealer engine.Sealer
	infile bool // LOAD DATA LOCAL INFILE allowed

	cwMu  sync.Mutex // serializes writes to the client (the relay's and a shutdown's)
	ended atomic.Bool

	fromClient, toClient, statements atomic.Int64
	mFrom, mTo                       prometheus.Counter

	stmts  map[uint32]*stmtInfo
	lastID uint32 // the statement last prepared (MariaDB's execute of statement id -1)
	status uint16 // the target's latest server status flags

	in      []byte    // the client's current command
	fwd     []byte    // framing scratch for what goes to the target
	out     []byte    // the batch for the client
	toSeq   byte      // next sequence id towards the client
	upSeq   byte      // next sequence id towards the target
	pktAt   int       // payload start in out of the packet last read from the target
	curSQL  string    // text of the running COM_QUERY (for LOCAL INFILE checks)
	curStmt *stmtInfo // the statement the running COM_STMT_EXECUTE executes
	started time.Time
	discard bool // swallow the rest of a response (after a refused LOCAL INFILE)

	// Recording of results.
	fields     []*gomysql.Field
	columns    []event.Column
	rows       []byte // packed rows of this batch; events alias it until the batch's Commit
	rowsStart  int
	rowsN      int
	resultRows int64
	values     [][]byte
	text       [][]byte // rendered values of a binary row
	orig       []byte   // originals of the unrecorded rows once masking changed one (like rows)
	origOn     bool
}

func newRelay(e *Engine, log *slog.Logger, c *client, up *upstream, rec *recorder.Session, mk *masker, g *guardrails, infile bool) *relay {
	r := &relay{
		e: e, log: log, c: c, up: up, rec: rec, limit: e.d.Config.MySQL.MaxPacketSize,
		cr:     bufio.NewReaderSize(c.r, clientBufSz),
		ur:     bufio.NewReaderSize(up.conn, upstreamBufS),
		guard:  g,
		masker: mk,
		sealer: e.d.Sealer,
		infile: infile,
		stmts:  map[uint32]*stmtInfo{},
		status: up.status, // sql_mode's NO_BACKSLASH_ESCAPES holds from the first statement
	}
	if r.limit <= 0 {
		r.limit = 1 << 30
	}
	if m := e.d.Metrics; m != nil {
		r.mFrom = m.Bytes.WithLabelValues(Name, c.target, "from_client")
		r.mTo = m.Bytes.WithLabelValues(Name, c.target, "to_client")
	}
	return r
}

// endState is how the relay ended.
type endState struct {
	reason string
	err    error
}

// run relays until either side ends or ctx is cancelled, and returns what session.end records.
func (r *relay) run(ctx context.Context) event.SessionEndData {
	r.ctx = ctx
	done := make(chan endState, 1)
	go func() { done <- r.loop() }()
	var first endState
	waitLoop := false
	select {
	case first = <-done:
	case <-ctx.Done():
		cause := context.Cause(ctx)
		first = endState{reason: engine.EndReason(cause), err: cause}
		r.writeClientError(newError(codeServerShutdown, "terminating connection: "+cause.Error()))
		waitLoop = true
	}
	r.ended.Store(true)
	r.c.conn.Close()
	r.up.conn.Close()
	if waitLoop {
		<-done
	}
	d := event.SessionEndData{Reason: first.reason, BytesFromClient: r.fromClient.Load(),
		BytesToClient: r.toClient.Load(), Statements: r.statements.Load()}
	if first.err != nil {
		d.Error = first.err.Error()
	}
	return d
}

// writeClientError sends an ERR packet outside the command flow (shutdown, recording failure).
func (r *relay) writeClientError(me *myError) {
	r.cwMu.Lock()
	defer r.cwMu.Unlock()
	r.c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	seq := r.toSeq
	r.c.conn.Write(appendPacket(nil, &seq, me.payload()))
}

// loop reads the client's commands one at a time: the protocol is half duplex, so the target's
// response to one command is complete before the next is read (a client that pipelines waits in
// the socket buffer, which keeps order).
func (r *relay) loop() endState {
	for {
		var start, frames int
		var seq byte
		var err error
		r.in, start, seq, frames, err = readPacket(r.cr, r.in[:0], r.limit)
		if err != nil {
			var tooLarge errTooLarge
			switch {
			case errors.As(err, &tooLarge):
				r.toSeq = seq + 1
				r.writeClientError(newError(codePacketTooLarge, err.Error()+"; raise mysql.max_packet_size in the gateway's config if this is legitimate"))
				return endState{reason: "error", err: err}
			case r.ended.Load(), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
				return endState{reason: "client_disconnected"}
			}
			return endState{reason: "client_disconnected", err: err}
		}
		r.count(&r.fromClient, r.mFrom, len(r.in)-start+headerLen*frames)
		r.toSeq = seq + byte(frames)
		r.upSeq = 0
		if len(r.in) == start {
			continue // an empty command: nothing to do
		}
		st, done := r.command(r.in[start:])
		if done {
			return st
		}
		if cap(r.in) > 4*batchBytes {
			r.in = nil
		}
		if cap(r.out) > 4*batchBytes {
			r.out = nil
		}
	}
}

func (r *relay) count(n *atomic.Int64, m prometheus.Counter, v int) {
	n.Add(int64(v))
	if m != nil {
		m.Add(float64(v))
	}
}

// command handles one client command. done ends the session with st.
func (r *relay) command(p []byte) (st endState, done bool) {
	r.started = time.Now()
	switch p[0] {
	case gomysql.COM_QUIT:
		r.rec.Commit()
		r.forward(p)
		return endState{reason: "client_terminated"}, true
	case gomysql.COM_QUERY:
		sql := string(p[1:])
		if r.guard != nil {
			if v := r.decide(r.ctx, sql, r.classify(sql)); !v.Allow {
				return r.refuse(newError(codeDeniedByPolicy, v.Msg))
			}
		}
		r.curSQL = sql
		if r.masker != nil {
			r.masker.statement(sql, r.noBackslashEscapes())
		}
		r.rec.Record(event.Query, event.QueryData{Text: sql, Protocol: "text"}, nil)
		r.statements.Add(1)
		return r.exchange(p, respQuery)
	case gomysql.COM_INIT_DB:
		r.rec.Record(event.Query, event.QueryData{Text: "USE " + quoteIdent(string(p[1:])), Protocol: "init_db"}, nil)
		return r.exchange(p, respOK)
	case gomysql.COM_STMT_PREPARE:
		sql := string(p[1:])
		r.curSQL = sql
		r.rec.Record(event.Query, event.QueryData{Text: sql, Protocol: "prepare"}, nil)
		return r.exchange(p, respPrepare)
	case gomysql.COM_STMT_EXECUTE:
		return r.execute(p)
	case gomysql.COM_STMT_FETCH:
		// The rows of a cursor opened by an execute, in the layout that execute sent. With no
		// cursor known, no layout: a row then cannot be parsed, which fails closed when
		// masking applies (the target refuses such a fetch anyway).
		r.fields = r.fields[:0]
		if len(p) >= 5 {
			if s := r.stmts[binary.LittleEndian.Uint32(p[1:])]; s != nil {
				r.fields = append(r.fields, s.cursor...)
				if r.masker != nil {
					r.masker.statement(s.sql, r.noBackslashEscapes())
				}
			}
		}
		return r.exchange(p, respFetch)
	case gomysql.COM_STMT_SEND_LONG_DATA:
		r.longData(p)
		return r.send(p)
	case gomysql.COM_STMT_CLOSE:
		if len(p) >= 5 {
			id := binary.LittleEndian.Uint32(p[1:])
			delete(r.stmts, id)
			if r.guard != nil {
				r.guard.s.Close(stmtName(id))
			}
		}
		return r.send(p)
	case gomysql.COM_STMT_RESET:
		if len(p) >= 5 {
			if s := r.stmts[binary.LittleEndian.Uint32(p[1:])]; s != nil {
				s.long = nil
			}
		}
		return r.exchange(p, respOK)
	case gomysql.COM_RESET_CONNECTION:
		clear(r.stmts)
		if r.guard != nil {
			r.guard.s.Reset()
		}
		r.rec.Record(event.Query, event.QueryData{Text: "COM_RESET_CONNECTION", Protocol: "command"}, nil)
		return r.exchange(p, respOK)
	case gomysql.COM_PING, gomysql.COM_SET_OPTION, gomysql.COM_DEBUG:
		return r.exchange(p, respOK)
	case gomysql.COM_PROCESS_KILL, gomysql.COM_REFRESH:
		// The SQL these old commands stand for, recorded and guarded as if sent as text.
		sql := commandSQL(p)
		if r.guard != nil {
			if v := r.decide(r.ctx, sql, r.classify(sql)); !v.Allow {
				return r.refuse(newError(codeDeniedByPolicy, v.Msg))
			}
		}
		r.rec.Record(event.Query, event.QueryData{Text: sql, Protocol: "command"}, nil)
		r.statements.Add(1)
		return r.exchange(p, respOK)
	case gomysql.COM_FIELD_LIST:
		// What the stock client's auto-rehash sends for every table: recorded and guarded as
		// the SHOW COLUMNS it stands for.
		sql := fieldListSQL(p[1:], r.noBackslashEscapes())
		if r.guard != nil {
			if v := r.decide(r.ctx, sql, r.classify(sql)); !v.Allow {
				return r.refuse(newError(codeDeniedByPolicy, v.Msg))
			}
		}
		r.rec.Record(event.Query, event.QueryData{Text: sql, Protocol: "field_list"}, nil)
		r.statements.Add(1)
		return r.exchange(p, respFieldList)
	case gomysql.COM_STATISTICS:
		return r.exchange(p, respOnePacket)
	}
	// COM_CHANGE_USER would re-authenticate the target session as someone else; replication
	// and the obsolete commands have nothing to do with a user's session.
	return r.refuse(newError(codeUnknownCommand, fmt.Sprintf("%s is not supported through the gateway", commandName(p[0]))))
}

func commandName(c byte) string {
	switch c {
	case gomysql.COM_CHANGE_USER:
		return "COM_CHANGE_USER"
	case gomysql.COM_BINLOG_DUMP, gomysql.COM_BINLOG_DUMP_GTID:
		return "COM_BINLOG_DUMP"
	case gomysql.COM_REGISTER_SLAVE:
		return "COM_REGISTER_SLAVE"
	case gomysql.COM_PROCESS_KILL:
		return "COM_PROCESS_KILL"
	case gomysql.COM_REFRESH:
		return "COM_REFRESH"
	case 0xfa:
		return "COM_STMT_BULK_EXECUTE"
	}
	return fmt.Sprintf("command 0x%02x", c)
}

// fieldListSQL is the statement a COM_FIELD_LIST (table name, NUL, column wildcard) stands
// for: SHOW COLUMNS FROM `t` [LIKE 'wild'].
func fieldListSQL(p []byte, noBackslashEscapes bool) string {
	table, wild, _ := bytes.Cut(p, []byte{0})
	sql := "SHOW COLUMNS FROM " + quoteIdent(string(table))
	if w := string(bytes.TrimRight(wild, "\x00")); w != "" {
		if !noBackslashEscapes {
			w = strings.ReplaceAll(w, `\`, `\\`)
		}
		sql += " LIKE '" + strings.ReplaceAll(w, "'", "''") + "'"
	}
	return sql
}

// refreshFlags are COM_REFRESH's flags (include/mysql_com.h, REFRESH_*) as the SQL that does
// the same: COM_REFRESH is what mysqladmin's flush-* and reload send.
var refreshFlags = []struct {
	bit byte
	sql string
}{
	{0x01, "FLUSH PRIVILEGES"}, {0x02, "FLUSH LOGS"}, {0x04, "FLUSH TABLES"}, {0x08, "FLUSH HOSTS"},
	{0x10, "FLUSH STATUS"}, {0x20, "FLUSH THREADS"}, {0x40, "RESET SLAVE"}, {0x80, "RESET MASTER"},
}

// commandSQL is the statement text a COM_PROCESS_KILL or COM_REFRESH stands for: "KILL 5",
// "FLUSH TABLES; FLUSH LOGS". A malformed packet gives its bytes after the command's name,
// which no parser accepts (a guarded target refuses it as unclassifiable).
func commandSQL(p []byte) string {
	switch {
	case p[0] == gomysql.COM_PROCESS_KILL && len(p) == 5:
		return "KILL " + strconv.FormatUint(uint64(binary.LittleEndian.Uint32(p[1:])), 10)
	case p[0] == gomysql.COM_REFRESH && len(p) == 2 && p[1] != 0:
		var out []string
		for _, f := range refreshFlags {
			if p[1]&f.bit != 0 {
				out = append(out, f.sql)
			}
		}
		return strings.Join(out, "; ")
	}
	return commandName(p[0]) + " " + fmt.Sprint(p[1:])
}

// refuse answers the client's command with an ERR packet of the gateway's own; nothing reaches
// the target.
func (r *relay) refuse(me *myError) (endState, bool) {
	r.rec.Record(event.Error, event.MessageData{Severity: "ERROR", Code: strconv.Itoa(int(me.code)), Message: me.msg,
		Detail: "SQLSTATE " + me.state, Source: "gateway"}, nil)
	if err := r.rec.Commit(); err != nil {
		return r.recordingFailed(err), true
	}
	r.out = appendPacket(r.out[:0], &r.toSeq, me.payload())
	return r.flushOut()
}

func (r *relay) recordingFailed(err error) endState {
	r.log.Error("recording failed: ending session", "err", err)
	r.writeClientError(newError(codeRecording, "recording failed, so the gateway ends this session: "+err.Error()))
	return endState{reason: "error", err: err}
}

// forward commits what is recorded and sends the command to the target.
func (r *relay) forward(p []byte) error {
	r.fwd = appendPacket(r.fwd[:0], &r.upSeq, p)
	_, err := r.up.conn.Write(r.fwd)
	return err
}

// send forwards a command that has no response.
func (r *relay) send(p []byte) (endState, bool) {
	if err := r.rec.Commit(); err != nil {
		return r.recordingFailed(err), true
	}
	if err := r.forward(p); err != nil {
		return r.upstreamLost(err), true
	}
	return endState{}, false
}

// exchange records-then-forwards a command and relays its response.
func (r *relay) exchange(p []byte, kind respKind) (endState, bool) {
	if err := r.rec.Commit(); err != nil {
		return r.recordingFailed(err), true
	}
	r.started = time.Now()
	if err := r.forward(p); err != nil {
		return r.upstreamLost(err), true
	}
	r.out = r.out[:0]
	err := r.response(kind)
	r.discard = false // a row that could not be masked swallows the rest of its response
	if err != nil {
		var st endState
		if errors.As(err, &st) {
			return st, true
		}
		return r.upstreamLost(err), true
	}
	return r.flushOut()
}

func (st endState) Error() string {
	if st.err != nil {
		return st.reason + ": " + st.err.Error()
	}
	return st.reason
}

func (r *relay) upstreamLost(err error) endState {
	if r.ended.Load() {
		return endState{reason: "client_disconnected"}
	}
	var lost *connector.LostError
	if errors.As(err, &lost) {
		// The session's agent is gone: say so, to the client and in the recording.
		r.writeClientError(newError(codeTargetDown, "Lost connection to target "+r.c.target+": "+lost.Error()+"; reconnect to be served by another agent (`airlock agents list`)"))
		return endState{reason: "agent_lost", err: err}
	}
	r.writeClientError(newError(codeTargetDown, "Lost connection to target "+r.c.target))
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return endState{reason: "upstream_closed", err: err}
}

// flushOut records what is pending, commits, and writes the batch to the client.
func (r *relay) flushOut() (endState, bool) {
	r.flushRows()
	r.flushMaskEvent()
	if err := r.rec.Commit(); err != nil {
		// None of r.out reaches the client: the error that ends the session takes the
		// sequence id of the first packet held back (byte 3 of its header), which is the one
		// the client expects next.
		if len(r.out) >= headerLen {
			r.toSeq = r.out[3]
		}
		r.out = r.out[:0]
		return r.recordingFailed(err), true
	}
	// Committed: the buffers the events aliased may be reused.
	r.rows, r.rowsStart = r.rows[:0], 0
	if len(r.out) > 0 {
		r.cwMu.Lock()
		_, err := r.c.conn.Write(r.out)
		r.cwMu.Unlock()
		if err != nil {
			return endState{reason: "client_disconnected"}, true
		}
		r.count(&r.toClient, r.mTo, len(r.out))
		r.out = r.out[:0]
	}
	return endState{}, false
}

// readUp reads the target's next packet into the batch (its header is filled by emit) and
// returns its payload.
func (r *relay) readUp() ([]byte, error) {
	if len(r.out) >= batchBytes {
		if st, done := r.flushOut(); done {
			return nil, st
		}
	}
	r.out = append(r.out, 0, 0, 0, 0)
	out, start, seq, frames, err := readPacket(r.ur, r.out, r.limit)
	if err != nil {
		r.out = r.out[:len(r.out)-headerLen]
		if r.ended.Load() {
			return nil, endState{reason: "client_disconnected"}
		}
		return nil, err
	}
	r.out, r.pktAt = out, start
	r.upSeq = seq + byte(frames)
	return r.out[start:], nil
}

// emit frames the packet last read (possibly rewritten at out[pktAt:]) for the client, or drops
// it when the response is being swallowed.
func (r *relay) emit() {
	if r.discard {
		r.out = r.out[:r.pktAt-headerLen]
		return
	}
	r.out = framePayload(r.out, r.pktAt, &r.toSeq)
}

// replace rewrites the payload of the packet last read.
func (r *relay) replace(p []byte) {
	r.out = append(r.out[:r.pktAt], p...)
}

func isEOF(p []byte) bool { return len(p) > 0 && len(p) < 9 && p[0] == gomysql.EOF_HEADER }

// response relays the target's response to one command.
func (r *relay) response(kind respKind) error {
	switch kind {
	case respOK, respOnePacket:
		p, err := r.readUp()
		if err != nil {
			return err
		}
		r.onTerminal(p, kind == respOK)
		r.emit()
		return nil
	case respPrepare:
		return r.prepareResponse()
	case respFieldList:
		r.fields = r.fields[:0]
		for {
			p, err := r.readUp()
			if err != nil {
				return err
			}
			end := isEOF(p) || (len(p) > 0 && p[0] == gomysql.ERR_HEADER)
			if end {
				if isEOF(p) {
					// The definitions are the answer: their names, and how many.
					r.recordColumns(false)
					r.recordResult("FIELD_LIST", int64(len(r.fields)))
				}
				r.onTerminal(p, true)
			} else {
				f, err := parseField(bytes.Clone(p)) // p's buffer is reused
				if err != nil {
					f = &gomysql.Field{Name: []byte("?")}
				}
				r.fields = append(r.fields, f)
			}
			r.emit()
			if end {
				return nil
			}
		}
	case respFetch:
		return r.rowsUntilEnd(true)
	}
	binary := kind == respExecute
	for {
		p, err := r.readUp()
		if err != nil {
			return err
		}
		switch {
		case len(p) == 0:
			r.emit()
			return nil
		case p[0] == gomysql.ERR_HEADER:
			r.onError(p)
			r.emit()
			return nil
		case p[0] == gomysql.OK_HEADER:
			more := r.onOK(p)
			r.emit()
			if !more {
				return nil
			}
			r.started = time.Now()
			continue
		case p[0] == gomysql.LocalInFile_HEADER && kind == respQuery:
			done, err := r.localInfile(p)
			if err != nil || done {
				return err
			}
			continue
		}
		// A result set: column count, definitions, EOF, rows, EOF.
		n, _, m := lenencInt(p)
		r.emit()
		if m == 0 || n > 1<<16 {
			return fmt.Errorf("target sent a malformed column count")
		}
		if err := r.readFields(int(n)); err != nil {
			return err
		}
		p, err = r.readUp()
		if err != nil {
			return err
		}
		if isEOF(p) {
			r.status = eofStatus(p)
		}
		r.emit()
		r.recordColumns(binary)
		if binary && r.status&gomysql.SERVER_STATUS_CURSOR_EXISTS != 0 {
			if r.curStmt != nil {
				r.curStmt.cursor = append([]*gomysql.Field(nil), r.fields...)
			}
			return nil // the rows come with COM_STMT_FETCH
		}
		if err := r.rowsUntilEnd(binary); err != nil {
			return err
		}
		if r.status&gomysql.SERVER_MORE_RESULTS_EXISTS == 0 {
			return nil
		}
		r.started = time.Now()
	}
}

// readFields reads n column definitions into r.fields.
func (r *relay) readFields(n int) error {
	r.fields = r.fields[:0]
	for i := 0; i < n; i++ {
		p, err := r.readUp()
		if err != nil {
			return err
		}
		f, err := parseField(bytes.Clone(p))
		if err != nil {
			return err
		}
		r.fields = append(r.fields, f)
		r.emit()
	}
	return nil
}

func (r *relay) recordColumns(binary bool) {
	if r.discard {
		return
	}
	r.flushRows()
	r.columns = make([]event.Column, len(r.fields))
	for i, f := range r.fields {
		r.columns[i] = event.Column{Name: string(f.Name)}
	}
	r.rec.Record(event.Columns, event.ColumnsData{Columns: r.columns}, nil)
	r.resultRows = 0
}

// rowsUntilEnd relays rows up to the EOF or ERR that ends them.
func (r *relay) rowsUntilEnd(binary bool) error {
	for {
		p, err := r.readUp()
		if err != nil {
			return err
		}
		switch {
		case isEOF(p):
			r.status = eofStatus(p)
			r.recordResult("SELECT", r.resultRows)
			r.emit()
			return nil
		case len(p) > 0 && p[0] == gomysql.ERR_HEADER:
			r.onError(p)
			r.emit()
			return nil
		}
		if !r.onRow(p, binary) {
			r.unmaskable()
			continue
		}
		r.emit()
	}
}

// unmaskable fails closed on a row that masking applies to but that cannot be parsed: the row
// never reaches the client, which gets an ERR in its place (ending the result as a target's error
// mid-result does), and the rest of the target's response is swallowed. The recording says why
// and keeps nothing of the row.
func (r *relay) unmaskable() {
	r.flushRows()
	me := newError(codeMasking, "the gateway could not parse a result row to mask it, so it withholds the rest of the result")
	r.rec.Record(event.Error, event.MessageData{Severity: "ERROR", Code: strconv.Itoa(int(me.code)), Message: me.msg,
		Detail: "SQLSTATE " + me.state, Source: "gateway"}, nil)
	r.log.Warn("masking: a result row could not be parsed; result withheld", "columns", len(r.fields))
	r.replace(me.payload())
	r.emit()
	r.discard = true
}

// onRow masks and records one row. It returns false, recording nothing, when masking applies
// and the row cannot be parsed: the caller must not forward it.
func (r *relay) onRow(p []byte, binary bool) bool {
	if r.discard {
		return true
	}
	var err error
	r.values = r.values[:0]
	if binary {
		r.values, err = splitBinaryRow(p, r.fields, r.values)
	} else {
		r.values, err = splitTextRow(p, len(r.fields), r.values)
	}
	if err != nil && r.masker != nil {
		return false
	}
	r.rowsN++
	r.resultRows++
	if err != nil {
		// Malformed and nothing to mask: forwarded as is (the client will say so); recorded as
		// raw bytes.
		r.rows = event.AppendRow(r.rows, [][]byte{p})
		return true
	}
	changed := false
	if r.masker != nil {
		changed = r.masker.row(r.fields, r.values, binary)
		if (changed && r.keepsOriginals()) || r.origOn {
			r.keepOriginal(p, binary)
		}
	}
	// Record before the packet is rewritten: unchanged values alias it.
	if binary {
		r.text = r.text[:0]
		for i, v := range r.values {
			if v == nil {
				r.text = append(r.text, nil)
				continue
			}
			t, ok := binaryText(r.fields[i].Type, r.fields[i].Flag&gomysql.UNSIGNED_FLAG != 0, v)
			if !ok {
				t = v
			}
			r.text = append(r.text, t)
		}
		r.rows = event.AppendRow(r.rows, r.text)
	} else {
		r.rows = event.AppendRow(r.rows, r.values)
	}
	if changed {
		mk := r.masker
		if binary {
			mk.scratch = appendBinaryRow(mk.scratch[:0], r.values)
		} else {
			mk.scratch = appendTextRow(mk.scratch[:0], r.values)
		}
		r.replace(mk.scratch)
	}
	return true
}

func (r *relay) flushRows() {
	if r.rowsN == 0 {
		return
	}
	// The event aliases r.rows until the batch's Commit; later appends go past it (or to a new
	// array), never over it.
	r.rec.Record(event.Rows, event.RowsData{Count: r.rowsN}, r.rows[r.rowsStart:len(r.rows):len(r.rows)])
	r.rowsStart = len(r.rows)
	if r.origOn {
		r.recordOriginals()
	}
	r.rowsN = 0
}

// onTerminal records the single packet that answers a simple command.
func (r *relay) onTerminal(p []byte, okErr bool) {
	switch {
	case len(p) > 0 && p[0] == gomysql.ERR_HEADER:
		r.onError(p)
	case okErr && len(p) > 0 && p[0] == gomysql.OK_HEADER:
		r.onOK(p)
	case isEOF(p):
		r.status = eofStatus(p)
	}
}

// onOK records an OK packet's result and reports whether more results follow.
func (r *relay) onOK(p []byte) bool {
	affected, _, n := lenencInt(p[1:])
	rest := p[1+n:]
	_, _, n = lenencInt(rest) // last insert id
	rest = rest[n:]
	if len(rest) >= 2 {
		r.status = binary.LittleEndian.Uint16(rest)
	}
	r.recordResult("OK", int64(affected))
	return r.status&gomysql.SERVER_MORE_RESULTS_EXISTS != 0
}

func eofStatus(p []byte) uint16 {
	if len(p) >= 5 {
		return binary.LittleEndian.Uint16(p[3:])
	}
	return 0
}

func (r *relay) recordResult(tag string, rows int64) {
	if r.discard {
		return
	}
	r.flushRows()
	r.rec.Record(event.Result, event.ResultData{Tag: tag, Rows: rows, DurationNS: int64(time.Since(r.started))}, nil)
	r.resultRows = 0
}

// onError records an ERR packet from the target (masking its message first).
func (r *relay) onError(p []byte) {
	r.flushRows()
	code, state, msg, ok := decodeErr(p)
	if !ok {
		return
	}
	orig := msg
	if r.masker != nil {
		if masked, changed := r.masker.text([]byte(msg)); changed {
			msg = string(masked)
			r.replace((&myError{code: code, state: state, msg: msg}).payload())
		}
	}
	if r.discard {
		return
	}
	d := event.MessageData{Severity: "ERROR", Code: strconv.Itoa(int(code)), Message: msg, Detail: "SQLSTATE " + state, Source: "target"}
	r.rec.Record(event.Error, d, nil)
	if msg != orig && r.keepsOriginals() {
		// The error as the target sent it, sealed (an auditor may reveal it), as PostgreSQL's.
		d.Message = orig
		if plain, err := json.Marshal(d); err == nil {
			r.recordOriginal(event.Error, plain)
		}
	}
	r.status &^= gomysql.SERVER_MORE_RESULTS_EXISTS
}

// prepareResponse relays COM_STMT_PREPARE's answer and remembers the statement.
func (r *relay) prepareResponse() error {
	p, err := r.readUp()
	if err != nil {
		return err
	}
	if len(p) == 0 || p[0] != gomysql.OK_HEADER || len(p) < 12 {
		if len(p) > 0 && p[0] == gomysql.ERR_HEADER {
			r.onError(p)
		}
		r.emit()
		return nil
	}
	id := binary.LittleEndian.Uint32(p[1:])
	ncols := int(binary.LittleEndian.Uint16(p[5:]))
	nparams := int(binary.LittleEndian.Uint16(p[7:]))
	r.emit()
	s := &stmtInfo{sql: r.curSQL, params: nparams}
	r.stmts[id] = s
	r.lastID = id
	if r.guard != nil {
		r.guard.s.Prepare(stmtName(id), s.sql, r.noBackslashEscapes())
	}
	if nparams > 0 {
		if err := r.readFields(nparams); err != nil {
			return err
		}
		if _, err := r.readUp(); err != nil { // EOF
			return err
		}
		r.emit()
	}
	if ncols > 0 {
		if err := r.readFields(ncols); err != nil {
			return err
		}
		s.columns = append([]*gomysql.Field(nil), r.fields...)
		if _, err := r.readUp(); err != nil { // EOF
			return err
		}
		r.emit()
	}
	return nil
}

// localInfile handles the target's request for a client file (LOAD DATA LOCAL INFILE). It is
// passed on only when the policy allows it and the file is the one the client's statement names;
// otherwise the target gets an empty file and the client an error, and the rest of the response
// is swallowed; done says the response is complete.
func (r *relay) localInfile(p []byte) (done bool, err error) {
	name := string(p[1:])
	if r.discard {
		// The client has been told this response ended (a result withheld): the request never
		// reaches it, and the target gets an empty file.
		r.out = r.out[:r.pktAt-headerLen]
		return false, r.forward(nil)
	}
	if !r.infile || !bytes.Contains([]byte(r.curSQL), []byte(name)) {
		r.out = r.out[:r.pktAt-headerLen] // the request never reaches the client
		if err := r.forward(nil); err != nil {
			return true, err
		}
		msg := "LOAD DATA LOCAL INFILE is not allowed by the gateway's policy (local_infile)"
		if r.infile {
			msg = fmt.Sprintf("the target asked for file %q, which the statement does not name", name)
		}
		me := newError(codeNotAllowed, msg)
		r.rec.Record(event.Error, event.MessageData{Severity: "ERROR", Code: strconv.Itoa(int(me.code)), Message: me.msg,
			Detail: "SQLSTATE " + me.state, Source: "gateway"}, nil)
		r.discard = true
		err := r.response(respQuery)
		r.discard = false
		if err != nil {
			return true, err
		}
		r.out = appendPacket(r.out, &r.toSeq, me.payload())
		return true, nil
	}
	r.emit()
	if st, done := r.flushOut(); done {
		return true, st
	}
	// The client now sends the file's contents, ending with an empty packet. Chunks are held
	// back (framed for the target) until the copy.in event that carries them is committed: the
	// target never gets a byte the recording does not hold, and a client that goes away
	// mid-file leaves nothing unrecorded behind it.
	var data, held []byte
	for {
		var start, frames int
		var seq byte
		var err error
		r.in, start, seq, frames, err = readPacket(r.cr, r.in[:0], r.limit)
		if err != nil {
			return true, endState{reason: "client_disconnected", err: err}
		}
		r.count(&r.fromClient, r.mFrom, len(r.in)-start+headerLen*frames)
		r.toSeq = seq + byte(frames)
		chunk := r.in[start:]
		data = append(data, chunk...)
		held = appendPacket(held, &r.upSeq, chunk)
		last := len(chunk) == 0
		if len(data) < batchBytes && !last {
			continue
		}
		r.rec.Record(event.CopyIn, event.CopyData{Bytes: len(data), Done: last}, data)
		if err := r.rec.Commit(); err != nil {
			return true, r.recordingFailed(err)
		}
		if _, err := r.up.conn.Write(held); err != nil {
			return true, err
		}
		if last {
			return false, nil
		}
		// Committed: the event no longer aliases data.
		data, held = data[:0], held[:0]
	}
}

// execute handles COM_STMT_EXECUTE: record the statement with its parameters, guard it, relay.
func (r *relay) execute(p []byte) (endState, bool) {
	if len(p) < 10 {
		return r.exchange(p, respExecute)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	if id == 0xffffffff { // MariaDB: the statement last prepared
		id = r.lastID
	}
	s := r.stmts[id]
	if s == nil {
		return r.exchange(p, respExecute) // the target will say it does not know it
	}
	if r.guard != nil {
		if v := r.decide(r.ctx, s.sql, r.guard.prepared(stmtName(id))); !v.Allow {
			return r.refuse(newError(codeDeniedByPolicy, v.Msg))
		}
	}
	params := r.params(s, p[10:])
	s.long = nil
	r.rec.Record(event.Query, event.QueryData{Text: s.sql, Protocol: "binary", Statement: strconv.FormatUint(uint64(id), 10), Params: params}, nil)
	r.statements.Add(1)
	r.fields = append(r.fields[:0], s.columns...)
	if r.masker != nil {
		r.masker.statement(s.sql, r.noBackslashEscapes())
	}
	s.cursor = nil
	r.curStmt = s
	st, done := r.exchange(p, respExecute)
	r.curStmt = nil
	return st, done
}

// params decodes the parameters of an execute for the recording; a malformed packet gives what
// could be decoded (the target refuses it anyway).
func (r *relay) params(s *stmtInfo, p []byte) []event.Value {
	n := s.params
	if n == 0 {
		return nil
	}
	nb := (n + 7) >> 3
	if len(p) < nb+1 {
		return nil
	}
	nulls := p[:nb]
	bound := p[nb]
	p = p[nb+1:]
	if bound == 1 {
		if len(p) < 2*n {
			return nil
		}
		s.types = append(s.types[:0], p[:2*n]...)
		p = p[2*n:]
	}
	if len(s.types) < 2*n {
		return nil
	}
	out := make([]event.Value, n)
	for i := 0; i < n; i++ {
		if nulls[i>>3]&(1<<(i&7)) != 0 {
			out[i] = event.Value{Null: true}
			continue
		}
		if v, ok := s.long[i]; ok {
			out[i] = renderValue(v)
			continue
		}
		typ, unsigned := s.types[2*i], s.types[2*i+1]&0x80 != 0
		l, err := binaryLen(typ, p)
		if err != nil {
			return out[:i]
		}
		t, ok := binaryText(typ, unsigned, p[:l])
		if !ok {
			t = p[:l]
		}
		out[i] = renderValue(t)
		p = p[l:]
	}
	return out
}

// longData keeps (the start of) a parameter sent with COM_STMT_SEND_LONG_DATA.
func (r *relay) longData(p []byte) {
	if len(p) < 7 {
		return
	}
	s := r.stmts[binary.LittleEndian.Uint32(p[1:])]
	if s == nil {
		return
	}
	i := int(binary.LittleEndian.Uint16(p[5:]))
	if s.long == nil {
		s.long = map[int][]byte{}
	}
	v := s.long[i]
	if room := maxLongData - len(v); room > 0 {
		s.long[i] = append(v, p[7:7+min(room, len(p)-7)]...)
	}
}

func stmtName(id uint32) string { return "#" + strconv.FormatUint(uint64(id), 10) }

func (r *relay) noBackslashEscapes() bool {
	return r.status&gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED != 0
}

// quoteIdent quotes a MySQL identifier with backticks.
func quoteIdent(s string) string {
	return "`" + string(bytes.ReplaceAll([]byte(s), []byte("`"), []byte("``"))) + "`"
}
