package postgres

import (
	"bufio"
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

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

const (
	// batchBytes bounds what one direction reads before it records, commits and forwards. It
	// is what keeps memory flat whatever a result's size: at most one batch per direction is
	// held, plus one message when a single message is larger.
	batchBytes   = 256 << 10
	clientBufSz  = 32 << 10
	upstreamBufS = 64 << 10
)

// Kinds of requests awaiting a response, in the order the client sent them.
const (
	pendSimple   = 'Q' // a simple Query: ends at ReadyForQuery
	pendExecute  = 'E' // Execute: ends at CommandComplete, EmptyQueryResponse, PortalSuspended or an error
	pendDescribe = 'D' // Describe of a statement: ends at ParameterDescription or an error
	pendSync     = 'S' // Sync: ends at ReadyForQuery
	pendParse    = 'P' // Parse: ends at ParseComplete or an error
	pendBind     = 'B' // Bind: ends at BindComplete or an error
	pendClose    = 'C' // Close: ends at CloseComplete or an error
	// pendDescribePortal: Describe of a portal, ends at RowDescription, NoData or an error. The
	// gateway sends one itself before an Execute the client did not describe, when the session
	// masks: the rows' columns must be those of this portal, not of an earlier result.
	pendDescribePortal = 'd'
)

type pending struct {
	kind    byte
	swallow bool // the gateway sent this request itself: its answer is not the client's
	start   time.Time
	stmt    string         // for pendDescribe
	cols    []event.Column // for pendExecute: the result's columns, when the statement was described
	// What a Parse, Bind or Close does, applied when the target answers that it did it: the
	// target refuses a Parse or Bind under a name in use, and skips everything after an error up
	// to Sync, so a name is only known to hold a statement (portal) once it said so.
	name   string      // pendParse: the statement; pendBind: the portal; pendClose: either
	info   *stmtInfo   // pendParse: the statement it makes
	portal *portalInfo // pendBind: the portal it makes
	close  byte        // pendClose: 'S' a statement, 'P' a portal, 0 unknown
	gid    uint64      // the guard's change pending on this request's answer (0: none)
	failed bool        // pendSimple: an error came back, so not every statement ran
}

type stmtInfo struct {
	sql   string
	oids  []uint32         // parameter types, from Parse or the statement's Describe
	cols  []event.Column   // result columns from the statement's Describe (formats not yet bound)
	guard *guard.Statement // its classification, on a guarded target
}

type relay struct {
	e     *Engine
	log   *slog.Logger
	c     *client
	cr    *bufio.Reader
	up    *upstream
	ur    *bufio.Reader
	rec   *recorder.Session
	limit int

	// Shared by both directions.
	mu      sync.Mutex
	queue   []pending
	stmts   map[string]*stmtInfo   // prepared statements by name, as the target is known to hold them
	portals map[string]*portalInfo // portals by name, as the target is known to hold them
	cwMu    sync.Mutex             // serializes writes to the client
	ended   atomic.Bool
	fatalUp atomic.Bool // the target sent a FATAL error before closing
	// quit: the client sent Terminate; the target closing after it is the consequence.
	quit atomic.Bool
	// upEnd: how the target side ended, stored before the client is told; the client leaving
	// after being told is the consequence, whichever direction's end is seen first.
	upEnd atomic.Pointer[endState]

	fromClient, toClient, statements atomic.Int64
	mFrom, mTo                       prometheus.Counter

	// Client-to-target direction only.
	// seg holds the statements parsed and portals bound since the client's last message other
	// than Parse, Bind, Describe, Close and Flush: a Bind (Execute) there uses exactly the
	// last of them, for the target runs it only if everything before it since then succeeded.
	seg  segment
	exec []*portalInfo // what the Execute being handled may run
	// describedPortal is the portal the client's previous message described ("" with
	// describedOK false: the previous message was no Describe of a portal).
	describedPortal string
	describedOK     bool
	copyIn          []byte
	guard           *guardrails // nil: no guardrails for this session
	ctx             context.Context

	// Target-to-client direction only.
	columns    []event.Column
	haveCols   bool   // the current result's columns are recorded
	rows       []byte // packed rows of this batch; events alias it until the batch's Commit
	rowsStart  int    // where the rows not yet recorded start in rows
	rowsN      int
	resultRows int64
	copyOut    []byte // like rows: aliased by events until the batch's Commit
	copyStart  int
	masker     *masker // nil: nothing to mask for this session
	// orig holds, once masking changed a value of the rows not yet recorded, those rows as the
	// target sent them (packed like rows), sealed into a rows.original event by flushRows.
	orig      []byte
	origOn    bool // orig covers the rows from rowsStart
	origAdded bool // rewrite appended the current DataRow's original
	// copyOrig and msgOrig do for COPY data and for errors, notices and notifications what
	// orig does for rows.
	copyOrig      []byte
	copyOrigOn    bool
	copyOrigAdded bool
	msgOrig       []byte // the original body of the message being handled
	msgOrigOn     bool
	sealer        engine.Sealer // nil: originals are not kept
	types         *valueRenderer
	tgt           target.Target // for the catalog lookups of masking column rules
}

type portalInfo struct {
	stmt    string
	info    *stmtInfo // what the statement was at Bind (nil: not known)
	g       guard.Statement
	gok     bool // g is known (guarded target)
	params  []event.Value
	formats []int16 // result format codes from Bind
}

type segment struct {
	stmts   map[string]*stmtInfo
	portals map[string]*portalInfo
}

func (s *segment) reset() {
	clear(s.stmts)
	clear(s.portals)
}

func newRelay(e *Engine, log *slog.Logger, c *client, t target.Target, up *upstream, rec *recorder.Session, mk *masker, g *guardrails) *relay {
	r := &relay{
		e: e, log: log, c: c, up: up, rec: rec, limit: e.d.Config.Postgres.MaxMessageSize,
		cr:      bufio.NewReaderSize(c.r, clientBufSz),
		ur:      bufio.NewReaderSize(up.conn, upstreamBufS),
		stmts:   map[string]*stmtInfo{},
		portals: map[string]*portalInfo{},
		types:   newValueRenderer(),
		masker:  mk,
		guard:   g,
		sealer:  e.d.Sealer,
		tgt:     t,
	}
	if g != nil && up != nil && up.Params["standard_conforming_strings"] == "off" {
		g.nonStandardStrings.Store(true)
	}
	if m := e.d.Metrics; m != nil {
		r.mFrom = m.Bytes.WithLabelValues(Name, c.target, "from_client")
		r.mTo = m.Bytes.WithLabelValues(Name, c.target, "to_client")
	}
	return r
}

// endState is how one direction ended.
type endState struct {
	reason string
	err    error
}

// run relays until either side ends or ctx is cancelled, and returns what session.end records.
func (r *relay) run(ctx context.Context) event.SessionEndData {
	r.ctx = ctx
	done := make(chan endState, 2)
	go func() { done <- r.clientToTarget() }()
	go func() { done <- r.targetToClient() }()

	var first endState
	select {
	case first = <-done:
	case <-ctx.Done():
		cause := context.Cause(ctx)
		first = endState{reason: engine.EndReason(cause), err: cause}
		r.writeClientFatal(fatal(codeAdminShutdown, "terminating connection: "+cause.Error(), ""))
	}
	if first.reason == "upstream_closed" && r.quit.Load() {
		// The target closed because the client said goodbye; its reader may notice first (a
		// tunnel through an agent makes that likelier).
		first = endState{reason: "client_terminated"}
	}
	if up := r.upEnd.Load(); up != nil && first.reason == "client_disconnected" {
		first = *up
	}
	if first.reason == "client_disconnected" && r.fatalUp.Load() {
		// The target ended the session with a FATAL error; the client leaving after reading
		// it is the consequence, whichever direction noticed first.
		first.reason = "upstream_closed"
	}
	r.ended.Store(true)
	r.c.conn.Close()
	r.up.conn.Close()
	<-done
	if first.reason == engine.EndShutdown || first.reason == engine.EndTerminated || first.reason == engine.EndMaxDuration {
		<-done
	}
	d := event.SessionEndData{Reason: first.reason, BytesFromClient: r.fromClient.Load(),
		BytesToClient: r.toClient.Load(), Statements: r.statements.Load()}
	if first.err != nil {
		d.Error = first.err.Error()
	}
	return d
}

// agentLost reports whether err says that the session's agent is gone, and if so tells the
// client and returns the end to record. Either direction may notice first: the target's
// reader, or the client's next message failing to reach the tunnel.
func (r *relay) agentLost(err error) (endState, bool) {
	var lost *connector.LostError
	if !errors.As(err, &lost) {
		return endState{}, false
	}
	st := endState{reason: "agent_lost", err: err}
	r.upEnd.CompareAndSwap(nil, &st)
	r.writeClientFatal(fatal(codeConnectionFailure, "connection to target "+r.c.target+" lost: "+lost.Error(),
		"The target is reached through an agent; reconnect to be served by another one (`airlock agents list`)."))
	return st, true
}

func (r *relay) writeClientFatal(pe *pgError) {
	r.cwMu.Lock()
	defer r.cwMu.Unlock()
	r.c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	r.c.conn.Write(pe.encode(nil))
}

// clientToTarget reads the client's messages, records statements, and forwards them.
func (r *relay) clientToTarget() endState {
	buf := make([]byte, 0, clientBufSz)
	for {
		buf = buf[:0]
		var readErr error
		terminated := false
		for {
			typ, body, err := readMessage(r.cr, &buf, r.limit)
			if err != nil {
				readErr = err
				break
			}
			buf = r.clientMessage(typ, buf, body-5)
			if typ == 'X' {
				terminated = true
				r.quit.Store(true)
				break
			}
			if r.cr.Buffered() < 5 || len(buf) >= batchBytes {
				break
			}
		}
		r.flushCopyIn(false, "")
		if err := r.rec.Commit(); err != nil {
			return r.recordingFailed(err)
		}
		if len(buf) > 0 {
			if _, err := r.up.conn.Write(buf); err != nil {
				if r.ended.Load() {
					return endState{reason: "client_disconnected"}
				}
				if st, ok := r.agentLost(err); ok {
					return st
				}
				return endState{reason: "upstream_closed", err: err}
			}
			r.fromClient.Add(int64(len(buf)))
			if r.mFrom != nil {
				r.mFrom.Add(float64(len(buf)))
			}
		}
		if terminated {
			return endState{reason: "client_terminated"}
		}
		if readErr != nil {
			var tooLarge errTooLarge
			switch {
			case errors.As(readErr, &tooLarge):
				r.writeClientFatal(fatal(codeProtocolViolation, readErr.Error(), "Raise postgres.max_message_size in the gateway's config if this is legitimate."))
				return endState{reason: "error", err: readErr}
			case r.ended.Load(), errors.Is(readErr, io.EOF), errors.Is(readErr, io.ErrUnexpectedEOF), errors.Is(readErr, net.ErrClosed):
				return endState{reason: "client_disconnected"}
			}
			return endState{reason: "client_disconnected", err: readErr}
		}
		if cap(buf) > 4*batchBytes {
			buf = make([]byte, 0, clientBufSz)
		}
	}
}

// clientMessage records and guards the client message at buf[start:] (the last in buf) and
// returns buf with what is to be forwarded in its place.
func (r *relay) clientMessage(typ byte, buf []byte, start int) []byte {
	if typ == 'E' && r.masker != nil {
		buf, start = r.describeBeforeExecute(buf, start)
	}
	r.onClientMessage(typ, buf[start+5:])
	if r.guard != nil {
		buf = r.guardMessage(typ, buf, start)
	}
	switch typ {
	case 'P', 'B', 'D', 'C', 'H':
	default:
		r.seg.reset()
	}
	return buf
}

// targetMessage masks and records the target message at buf[start:] (the last in buf) and
// returns buf with what is to be sent to the client in its place.
func (r *relay) targetMessage(typ byte, buf []byte, start int) []byte {
	if r.masker != nil {
		buf = r.rewrite(typ, buf, start)
	}
	if typ == 'E' && r.guard != nil {
		buf = tidyRefusal(buf, start)
	}
	if r.onTargetMessage(typ, buf[start+5:]) {
		// The answer to a request the gateway sent itself (the Parse and Bind in place of a
		// refused Execute, a Describe before an Execute): the client must not see it.
		buf = buf[:start]
	}
	return buf
}

func (r *relay) recordingFailed(err error) endState {
	r.log.Error("recording failed: ending session", "err", err)
	r.writeClientFatal(fatal(codeIOError, "recording failed, so the gateway ends this session: "+err.Error(),
		"The session's recording is required. Try again once the gateway's store is writable."))
	return endState{reason: "error", err: err}
}

func (r *relay) push(p pending) {
	r.mu.Lock()
	r.queue = append(r.queue, p)
	r.mu.Unlock()
}

// onClientMessage records what a client message means. It never changes the message.
func (r *relay) onClientMessage(typ byte, body []byte) {
	r.describedOK = false
	switch typ {
	case 'Q':
		var q pgproto3.Query
		if q.Decode(body) != nil {
			return
		}
		now := time.Now()
		r.rec.Record(event.Query, event.QueryData{Text: q.String, Protocol: "simple"}, nil)
		r.statements.Add(1)
		r.push(pending{kind: pendSimple, start: now})
	case 'P':
		var p pgproto3.Parse
		if p.Decode(body) != nil {
			r.push(pending{kind: pendParse})
			return
		}
		info := &stmtInfo{sql: p.Query, oids: p.ParameterOIDs}
		pe := pending{kind: pendParse, name: p.Name, info: info}
		if r.guard != nil {
			r.mu.Lock()
			pending := len(r.queue)
			r.mu.Unlock()
			var res guard.Result
			var id uint64
			if r.guard.ambiguousStrings(p.Query, pending) {
				res, id = r.guard.s.ParseUnclassifiable(p.Name, p.Query, ambiguousReason)
			} else {
				res, id = r.guard.s.Parse(p.Name, p.Query)
			}
			g := res.Merged()
			info.guard, pe.gid = &g, id
		}
		r.push(pe)
		r.segStmts()[p.Name] = info
	case 'B':
		var b pgproto3.Bind
		if b.Decode(body) != nil {
			r.push(pending{kind: pendBind})
			return
		}
		info, g, gok := r.resolveStmt(b.PreparedStatement)
		var oids []uint32
		if info != nil {
			r.mu.Lock()
			oids = info.oids
			r.mu.Unlock()
		}
		params := make([]event.Value, len(b.Parameters))
		for i, v := range b.Parameters {
			var oid uint32
			if i < len(oids) {
				oid = oids[i]
			}
			params[i] = r.types.render(oid, paramFormat(b.ParameterFormatCodes, i), v)
		}
		pi := &portalInfo{stmt: b.PreparedStatement, info: info, g: g, gok: gok, params: params, formats: b.ResultFormatCodes}
		r.push(pending{kind: pendBind, name: b.DestinationPortal, portal: pi})
		r.segPortals()[b.DestinationPortal] = pi
	case 'E':
		var ex pgproto3.Execute
		if ex.Decode(body) != nil {
			r.exec = nil
			return
		}
		r.exec = r.resolvePortal(ex.Portal)
		var p portalInfo
		if len(r.exec) > 0 {
			p = *r.exec[0]
		}
		var cols []event.Column
		sql := execText(r.exec)
		r.mu.Lock()
		if st := p.info; len(r.exec) == 1 && st != nil && st.cols != nil {
			// Clients that described the statement (pgx) bind result formats and never
			// describe the portal: the rows' columns are the statement's with those formats.
			cols = make([]event.Column, len(st.cols))
			for i, c := range st.cols {
				c.Format = paramFormat(p.formats, i)
				cols[i] = c
			}
		}
		r.mu.Unlock()
		now := time.Now()
		r.rec.Record(event.Query, event.QueryData{Text: sql, Protocol: "extended", Statement: p.stmt, Portal: ex.Portal, Params: p.params}, nil)
		r.statements.Add(1)
		r.push(pending{kind: pendExecute, start: now, cols: cols})
	case 'D':
		var d pgproto3.Describe
		if d.Decode(body) != nil {
			break
		}
		if d.ObjectType == 'S' {
			r.push(pending{kind: pendDescribe, stmt: d.Name})
		} else {
			r.push(pending{kind: pendDescribePortal})
			r.describedPortal, r.describedOK = d.Name, true
			return
		}
	case 'C':
		var c pgproto3.Close
		if c.Decode(body) != nil {
			r.push(pending{kind: pendClose})
			return
		}
		pe := pending{kind: pendClose, name: c.Name, close: c.ObjectType}
		if c.ObjectType == 'S' {
			delete(r.seg.stmts, c.Name)
			if r.guard != nil {
				pe.gid = r.guard.s.CloseStatement(c.Name)
			}
		} else {
			delete(r.seg.portals, c.Name)
		}
		r.push(pe)
	case 'S':
		r.push(pending{kind: pendSync})
	case 'd':
		r.copyIn = append(r.copyIn, body...)
		if len(r.copyIn) >= batchBytes {
			r.flushCopyIn(false, "")
		}
	case 'c':
		r.flushCopyIn(true, "")
	case 'f':
		var f pgproto3.CopyFail
		msg := "copy failed"
		if f.Decode(body) == nil {
			msg = f.Message
		}
		r.flushCopyIn(true, msg)
	case 'F':
		var f pgproto3.FunctionCall
		if f.Decode(body) != nil {
			return
		}
		codes := make([]int16, len(f.ArgFormatCodes))
		for i, c := range f.ArgFormatCodes {
			codes[i] = int16(c)
		}
		args := make([]event.Value, len(f.Arguments))
		for i, v := range f.Arguments {
			args[i] = r.types.render(0, paramFormat(codes, i), v)
		}
		r.rec.Record(event.Query, event.QueryData{Text: "function call: oid " + strconv.FormatUint(uint64(f.Function), 10), Protocol: "function", Params: args}, nil)
		r.statements.Add(1)
		// Its result is recorded as one row of one column.
		r.push(pending{kind: pendSimple, start: time.Now(), cols: []event.Column{{Name: "result", Format: int16(f.ResultFormatCode)}}})
	}
}

func paramFormat(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}

func (r *relay) segStmts() map[string]*stmtInfo {
	if r.seg.stmts == nil {
		r.seg.stmts = map[string]*stmtInfo{}
	}
	return r.seg.stmts
}

func (r *relay) segPortals() map[string]*portalInfo {
	if r.seg.portals == nil {
		r.seg.portals = map[string]*portalInfo{}
	}
	return r.seg.portals
}

// resolveStmt returns what the prepared statement name is, for a Bind the client sends now:
// the one parsed in this segment, or else what the target may hold (the last statement known
// and every Parse of that name not yet answered; several make a statement whose text is all of
// theirs), with its classification on a guarded target (gok false: not known).
func (r *relay) resolveStmt(name string) (info *stmtInfo, g guard.Statement, gok bool) {
	if in, ok := r.seg.stmts[name]; ok {
		if in.guard != nil {
			g, gok = *in.guard, true
		}
		return in, g, gok
	}
	var c []*stmtInfo
	r.mu.Lock()
	if in := r.stmts[name]; in != nil {
		c = append(c, in)
	}
	for _, p := range r.queue {
		if p.kind == pendParse && p.info != nil && p.name == name {
			c = append(c, p.info)
		}
	}
	r.mu.Unlock()
	switch len(c) {
	case 0:
	case 1:
		info = c[0]
	default:
		sqls := make([]string, len(c))
		for i, in := range c {
			sqls[i] = in.sql
		}
		info = &stmtInfo{sql: joinCandidates(sqls)}
	}
	if r.guard != nil {
		g, gok = r.guard.s.Prepared(name)
	}
	return info, g, gok
}

// resolvePortal returns what the portal name may be, for an Execute the client sends now: the
// one bound in this segment, or else the last one known and every Bind of that name not yet
// answered.
func (r *relay) resolvePortal(name string) []*portalInfo {
	if pi, ok := r.seg.portals[name]; ok {
		return []*portalInfo{pi}
	}
	var c []*portalInfo
	r.mu.Lock()
	if pi := r.portals[name]; pi != nil {
		c = append(c, pi)
	}
	for _, p := range r.queue {
		if p.kind == pendBind && p.portal != nil && p.name == name {
			c = append(c, p.portal)
		}
	}
	r.mu.Unlock()
	return c
}

// execText is the statement text recorded for an Execute of one of these portals.
func execText(c []*portalInfo) string {
	sqls := make([]string, 0, len(c))
	for _, p := range c {
		if p.info != nil {
			sqls = append(sqls, p.info.sql)
		}
	}
	return joinCandidates(sqls)
}

// joinCandidates is the text of a statement that is one of several, each as sent.
func joinCandidates(sqls []string) string {
	if len(sqls) == 1 {
		return sqls[0]
	}
	return strings.Join(sqls, "\n/* or, as the target may hold it: */\n")
}

func (r *relay) flushCopyIn(done bool, fail string) {
	if len(r.copyIn) == 0 && !done {
		return
	}
	data := make([]byte, len(r.copyIn))
	copy(data, r.copyIn)
	r.rec.Record(event.CopyIn, event.CopyData{Bytes: len(data), Done: done, Fail: fail}, data)
	r.copyIn = r.copyIn[:0]
}

// targetToClient reads the target's messages, records results, and forwards them.
func (r *relay) targetToClient() endState {
	buf := make([]byte, 0, upstreamBufS)
	for {
		buf = buf[:0]
		var readErr error
		for {
			typ, body, err := readMessage(r.ur, &buf, r.limit)
			if err != nil {
				readErr = err
				break
			}
			buf = r.targetMessage(typ, buf, body-5)
			if r.ur.Buffered() < 5 || len(buf) >= batchBytes {
				break
			}
		}
		r.flushRows()
		r.flushCopyOut(false)
		r.flushMaskEvent()
		if err := r.rec.Commit(); err != nil {
			return r.recordingFailed(err)
		}
		// Committed: the buffers the events aliased may be reused.
		r.rows, r.rowsStart = r.rows[:0], 0
		r.copyOut, r.copyStart = r.copyOut[:0], 0
		if len(buf) > 0 {
			r.cwMu.Lock()
			_, err := r.c.conn.Write(buf)
			r.cwMu.Unlock()
			if err != nil {
				return endState{reason: "client_disconnected"}
			}
			r.toClient.Add(int64(len(buf)))
			if r.mTo != nil {
				r.mTo.Add(float64(len(buf)))
			}
		}
		if readErr != nil {
			if r.ended.Load() {
				return endState{reason: "client_disconnected"}
			}
			if st, ok := r.agentLost(readErr); ok {
				return st
			}
			if errors.Is(readErr, io.EOF) || errors.Is(readErr, net.ErrClosed) {
				readErr = nil
			}
			st := endState{reason: "upstream_closed", err: readErr}
			if !r.quit.Load() {
				r.upEnd.CompareAndSwap(nil, &st)
			}
			if !r.fatalUp.Load() && !r.quit.Load() {
				r.writeClientFatal(fatal(codeConnectionFailure, "connection to target "+r.c.target+" lost", ""))
			}
			return st
		}
		if cap(buf) > 4*batchBytes {
			buf = make([]byte, 0, upstreamBufS)
		}
	}
}

// front returns the oldest pending request; ok is false when none is pending.
func (r *relay) front() (pending, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return pending{}, false
	}
	return r.queue[0], true
}

func (r *relay) pop() {
	r.mu.Lock()
	if len(r.queue) > 0 {
		r.queue = r.queue[1:]
	}
	r.mu.Unlock()
}

// completes pops the Parse (typ '1'), Bind ('2') or Close ('3') the message answers, applies
// what it did, and reports whether the gateway itself sent that request.
func (r *relay) completes(typ byte) bool {
	want := byte(pendParse)
	switch typ {
	case '2':
		want = pendBind
	case '3':
		want = pendClose
	}
	r.mu.Lock()
	if len(r.queue) == 0 || r.queue[0].kind != want {
		r.mu.Unlock()
		return false
	}
	p := r.queue[0]
	r.queue = r.queue[1:]
	switch {
	case p.kind == pendParse && p.info != nil:
		r.stmts[p.name] = p.info
	case p.kind == pendBind && p.portal != nil:
		r.portals[p.name] = p.portal
	case p.kind == pendClose && p.close == 'S':
		delete(r.stmts, p.name)
	case p.kind == pendClose && p.close == 'P':
		delete(r.portals, p.name)
	}
	r.mu.Unlock()
	r.settle(p, true)
	return p.swallow
}

// settle settles the guard's change pending on p's answer: done when the target did it (ok), or
// dropped when it skipped or refused it; a simple Query is settled with ok false when an error
// came back, after which some of its statements may have run.
func (r *relay) settle(p pending, ok bool) {
	if p.gid == 0 || r.guard == nil {
		return
	}
	switch {
	case p.kind == pendSimple:
		r.guard.s.Settle(p.gid, ok && !p.failed)
	case ok:
		r.guard.s.Settle(p.gid, true)
	default:
		r.guard.s.Drop(p.gid)
	}
}

// restartFront sets the start time of the running simple query's next statement.
func (r *relay) restartFront(t time.Time) {
	r.mu.Lock()
	if len(r.queue) > 0 {
		r.queue[0].start = t
	}
	r.mu.Unlock()
}

// onTargetMessage records what a target message means. It never changes the message; it
// reports whether the message answers a request of the gateway's own, which the client must not
// see.
func (r *relay) onTargetMessage(typ byte, body []byte) (drop bool) {
	switch typ {
	case '1', '2', '3':
		return r.completes(typ)
	case 'S':
		if r.guard != nil {
			var ps pgproto3.ParameterStatus
			if ps.Decode(body) == nil && ps.Name == "standard_conforming_strings" {
				r.guard.nonStandardStrings.Store(ps.Value != "on")
			}
		}
	case 'V':
		var v pgproto3.FunctionCallResponse
		if v.Decode(body) != nil {
			return
		}
		r.flushRows()
		p, _ := r.front()
		r.columns, r.haveCols = p.cols, true
		r.rec.Record(event.Columns, event.ColumnsData{Columns: r.columns}, nil)
		row := functionRow(v.Result)
		if r.origOn && !r.origAdded {
			r.orig = event.AppendRowBody(r.orig, row)
		}
		r.origAdded = false
		r.rows = event.AppendRowBody(r.rows, row)
		r.rowsN++
		r.flushRows()
		r.haveCols = false
	case 'D':
		r.currentColumns()
		if r.origOn && !r.origAdded {
			r.orig = event.AppendRowBody(r.orig, body) // unchanged: the original is what was sent
		}
		r.origAdded = false
		r.rows = event.AppendRowBody(r.rows, body)
		r.rowsN++
		r.resultRows++
	case 'T':
		var rd pgproto3.RowDescription
		if rd.Decode(body) != nil {
			return
		}
		cols := make([]event.Column, len(rd.Fields))
		for i, f := range rd.Fields {
			cols[i] = event.Column{Name: string(f.Name), OID: f.DataTypeOID, Format: f.Format}
		}
		if r.masker != nil && r.masker.m.HasColumnRules() {
			r.markRuled(cols, rd.Fields)
		}
		p, ok := r.front()
		if ok && p.kind == pendDescribe {
			// A statement's description: its formats are not bound yet, so it describes no
			// rows; keep it for the Executes that will use the statement.
			r.pop()
			r.mu.Lock()
			if st := r.stmts[p.stmt]; st != nil {
				st.cols = cols
			}
			r.mu.Unlock()
			return
		}
		if ok && p.kind == pendDescribePortal {
			r.pop()
			drop = p.swallow
		}
		r.flushRows()
		r.columns = cols
		r.haveCols = true
		r.rec.Record(event.Columns, event.ColumnsData{Columns: r.columns}, nil)
		r.resultRows = 0
		return drop
	case 'C', 'I', 's':
		r.flushRows()
		var tag string
		if typ == 'C' {
			var cc pgproto3.CommandComplete
			if cc.Decode(body) == nil {
				tag = string(cc.CommandTag)
			}
		}
		now := time.Now()
		p, _ := r.front()
		res := event.ResultData{Tag: tag, Rows: rowsFromTag(tag, r.resultRows), Suspended: typ == 's'}
		if !p.start.IsZero() {
			res.DurationNS = int64(now.Sub(p.start))
		}
		r.rec.Record(event.Result, res, nil)
		r.resultRows = 0
		r.haveCols = false
		if p.kind == pendExecute {
			r.pop()
		} else if p.kind == pendSimple {
			r.restartFront(now)
		}
	case 'E':
		r.flushRows()
		var er pgproto3.ErrorResponse
		if er.Decode(body) != nil {
			return
		}
		r.rec.Record(event.Error, errorData(&er), nil)
		r.messageOriginal(typ)
		r.haveCols = false
		if er.Severity == "FATAL" || er.Severity == "PANIC" {
			r.fatalUp.Store(true)
		}
		r.resultRows = 0
		// In the extended protocol the target skips everything up to the next Sync.
		var skipped []pending
		r.mu.Lock()
		if len(r.queue) > 0 && r.queue[0].kind == pendSimple {
			r.queue[0].failed = true
		} else if len(r.queue) > 0 && r.queue[0].kind != pendSync {
			i := 0
			for i < len(r.queue) && r.queue[i].kind != pendSync {
				i++
			}
			skipped = append(skipped, r.queue[:i]...)
			r.queue = r.queue[i:]
		}
		r.mu.Unlock()
		for _, p := range skipped {
			r.settle(p, false)
		}
	case 'Z':
		var done []pending
		r.mu.Lock()
		for len(r.queue) > 0 {
			p := r.queue[0]
			r.queue = r.queue[1:]
			done = append(done, p)
			if p.kind == pendSync || p.kind == pendSimple {
				break
			}
		}
		r.mu.Unlock()
		for _, p := range done {
			r.settle(p, p.kind == pendSimple)
		}
	case 't':
		var pd pgproto3.ParameterDescription
		if pd.Decode(body) != nil {
			return
		}
		// The statement's RowDescription or NoData follows and ends the Describe.
		if p, ok := r.front(); ok && p.kind == pendDescribe {
			r.mu.Lock()
			if st := r.stmts[p.stmt]; st != nil {
				st.oids = pd.ParameterOIDs
			}
			r.mu.Unlock()
		}
	case 'n':
		p, ok := r.front()
		if ok && p.kind == pendDescribe {
			r.pop()
		}
		if ok && p.kind == pendDescribePortal {
			// The portal returns no rows: none may be read with an earlier result's columns.
			r.pop()
			r.flushRows()
			r.columns, r.haveCols = nil, true
			return p.swallow
		}
	case 'N':
		var n pgproto3.ErrorResponse // a NoticeResponse has the same fields
		if n.Decode(body) == nil {
			r.rec.Record(event.Notice, errorData(&n), nil)
			r.messageOriginal(typ)
		}
	case 'A':
		var n pgproto3.NotificationResponse
		if n.Decode(body) == nil {
			r.rec.Record(event.Notification, notificationData(&n), nil)
			r.messageOriginal(typ)
		}
	case 'd':
		if r.copyOrigOn && !r.copyOrigAdded {
			r.copyOrig = append(r.copyOrig, body...) // unchanged: the original is what was sent
		}
		r.copyOrigAdded = false
		r.copyOut = append(r.copyOut, body...)
	case 'c':
		r.flushCopyOut(true)
	}
	return false
}

// functionRow is a function call's result as the body of a DataRow of one value.
func functionRow(v []byte) []byte {
	row := []byte{0, 1, 0xFF, 0xFF, 0xFF, 0xFF}
	if v == nil {
		return row
	}
	row = binary.BigEndian.AppendUint32(row[:2], uint32(len(v)))
	return append(row, v...)
}

// currentColumns returns the columns of the rows being received. Rows of an Execute whose
// portal was not described take the statement's description with the formats the client bound
// (recorded as a columns event the first time).
func (r *relay) currentColumns() []event.Column {
	if !r.haveCols {
		r.haveCols = true
		if p, ok := r.front(); ok && p.kind == pendExecute && p.cols != nil {
			r.flushRows()
			r.columns = p.cols
			r.rec.Record(event.Columns, event.ColumnsData{Columns: r.columns}, nil)
		}
	}
	return r.columns
}

// guardMessage applies the session's guardrails to the client message at buf[start:] and
// returns buf, with a refused simple Query, Execute or function call replaced by requests that
// make the target answer with the refusal, in order with everything else the client pipelined.
// A Parse was classified by onClientMessage; it is the Execute that is decided.
func (r *relay) guardMessage(typ byte, buf []byte, start int) []byte {
	body := buf[start+5:]
	switch typ {
	case 'Q':
		var q pgproto3.Query
		if q.Decode(body) != nil {
			return buf
		}
		r.mu.Lock()
		pending := len(r.queue) - 1 // onClientMessage queued this Query last
		r.mu.Unlock()
		var res guard.Result
		var id uint64
		if r.guard.ambiguousStrings(q.String, pending) {
			// Not classified: what it prepares is not known; an EXECUTE of it is refused.
			res = guard.Unclassifiable(q.String, ambiguousReason)
		} else {
			res, id = r.guard.s.ClassifyQuery(q.String)
		}
		if v := r.decide(r.ctx, q.String, res); !v.Allow {
			r.guard.s.Drop(id) // it never reaches the target
			return append(buf[:start], refusalQuery(v.Msg)...)
		}
		r.mu.Lock()
		if n := len(r.queue); n > 0 && r.queue[n-1].kind == pendSimple {
			r.queue[n-1].gid = id
		}
		r.mu.Unlock()
	case 'E':
		var ex pgproto3.Execute
		if ex.Decode(body) != nil {
			return buf
		}
		// What the portal may run: exactly what it was bound to in this segment, or else every
		// statement it may have been bound to (the most dangerous decides).
		res := guard.Result{Statements: make([]guard.Statement, 0, len(r.exec))}
		for _, p := range r.exec {
			if !p.gok {
				res.Statements = nil
				break
			}
			res.Statements = append(res.Statements, p.g)
		}
		if len(res.Statements) == 0 {
			stmt := ""
			if len(r.exec) > 0 {
				stmt = r.exec[0].stmt
			}
			return r.refuseExecute(buf, start, fmt.Sprintf("%sunknown: statement %q was not seen being prepared on this guarded target", refusalPrefix, stmt))
		}
		if v := r.decide(r.ctx, execText(r.exec), res); !v.Allow {
			return r.refuseExecute(buf, start, v.Msg)
		}
	case 'F':
		// A function call names its function by OID only: nothing to classify, so it is
		// unclassifiable, refused unless a rule allows that class.
		var f pgproto3.FunctionCall
		if f.Decode(body) != nil {
			return buf
		}
		text := "function call: oid " + strconv.FormatUint(uint64(f.Function), 10)
		st := guard.Statement{SQL: text, Kind: "call", Kinds: []string{"call"}, Classes: []string{guard.ClassUnclassifiable},
			Reasons: []string{guard.ClassUnclassifiable + ": a function call message names its function by OID, which the gateway cannot classify"}}
		if v := r.decide(r.ctx, text, guard.Result{Statements: []guard.Statement{st}}); !v.Allow {
			return append(buf[:start], refusalQuery(v.Msg)...)
		}
	}
	return buf
}

// describeBeforeExecute puts a Describe of the Execute's portal before the Execute at
// buf[start:] unless the client's previous message described that portal, and returns buf and
// where the Execute now starts. The target's answer (swallowed) gives the columns of exactly the
// rows this Execute returns: without it, rows of a portal nobody described (a client may read
// them without a description, or execute a suspended portal again after another result) would
// be masked with the columns of an earlier result, or of none, and so not masked at all.
func (r *relay) describeBeforeExecute(buf []byte, start int) ([]byte, int) {
	var ex pgproto3.Execute
	if ex.Decode(buf[start+5:]) != nil || (r.describedOK && r.describedPortal == ex.Portal) {
		return buf, start
	}
	msg := append([]byte(nil), buf[start:]...)
	buf, _ = (&pgproto3.Describe{ObjectType: 'P', Name: ex.Portal}).Encode(buf[:start])
	r.push(pending{kind: pendDescribePortal, swallow: true})
	at := len(buf)
	return append(buf, msg...), at
}

// refuseExecute replaces the Execute at buf[start:] with a Parse, Bind and Execute of the
// unnamed statement and portal running refusalQuery: the target answers ParseComplete and
// BindComplete, which the gateway swallows, then the refusal error in the Execute's place, and
// skips the rest up to Sync as after any error. The client's unnamed statement and portal are
// replaced; named ones are untouched.
func (r *relay) refuseExecute(buf []byte, start int, msg string) []byte {
	sql := refusalSQL(msg)
	buf = buf[:start]
	buf, _ = (&pgproto3.Parse{Query: sql}).Encode(buf)
	buf, _ = (&pgproto3.Bind{}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	// The unnamed statement and portal hold the refusal once the target answered.
	res, id := r.guard.s.Parse("", sql)
	g := res.Merged()
	info := &stmtInfo{sql: sql, guard: &g}
	parse := pending{kind: pendParse, swallow: true, name: "", info: info, gid: id}
	bind := pending{kind: pendBind, swallow: true, name: "", portal: &portalInfo{info: info, g: g, gok: true}}
	r.mu.Lock()
	// onClientMessage queued the Execute last; the injected Parse and Bind answer first.
	n := len(r.queue)
	exec := r.queue[n-1]
	r.queue = append(r.queue[:n-1], parse, bind, exec)
	r.mu.Unlock()
	return buf
}

// rowsFromTag takes the row count from a command tag ("SELECT 5", "INSERT 0 3"), falling back
// to the rows counted.
func rowsFromTag(tag string, counted int64) int64 {
	if i := strings.LastIndexByte(tag, ' '); i >= 0 {
		if n, err := strconv.ParseInt(tag[i+1:], 10, 64); err == nil {
			return n
		}
	}
	return counted
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

func (r *relay) flushCopyOut(done bool) {
	data := r.copyOut[r.copyStart:len(r.copyOut):len(r.copyOut)]
	if len(data) == 0 && !done {
		return
	}
	r.rec.Record(event.CopyOut, event.CopyData{Bytes: len(data), Done: done}, data)
	r.copyStart = len(r.copyOut)
	if r.copyOrigOn {
		r.recordOriginal(event.CopyOut, r.copyOrig)
		r.copyOrig = r.copyOrig[:0]
		r.copyOrigOn = false
	}
}

func errorData(e *pgproto3.ErrorResponse) event.MessageData {
	return event.MessageData{Severity: e.Severity, Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint, Source: "target"}
}

func notificationData(n *pgproto3.NotificationResponse) event.NotificationData {
	return event.NotificationData{PID: n.PID, Channel: n.Channel, Payload: n.Payload}
}

// messageOriginal records, after the error, notice or notification event of the message just
// handled, its original when masking changed it: the event's data as the target sent it.
func (r *relay) messageOriginal(typ byte) {
	if !r.msgOrigOn {
		return
	}
	r.msgOrigOn = false
	var (
		of   event.Type
		data any
	)
	switch typ {
	case 'E', 'N':
		var e pgproto3.ErrorResponse
		if e.Decode(r.msgOrig) != nil {
			return
		}
		of, data = event.Error, errorData(&e)
		if typ == 'N' {
			of = event.Notice
		}
	case 'A':
		var n pgproto3.NotificationResponse
		if n.Decode(r.msgOrig) != nil {
			return
		}
		of, data = event.Notification, notificationData(&n)
	}
	clear(r.msgOrig)
	plain, err := json.Marshal(data)
	if err != nil {
		return
	}
	r.recordOriginal(of, plain)
}
