package postgres

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
)

// protoRelay is a relay with a recording, fed message by message through the same handlers as
// clientToTarget and targetToClient.
type protoRelay struct {
	*relay
	st  store.Store
	rec *recorder.Session
}

func newProtoRelay(t *testing.T, guarded bool, mask []string) protoRelay {
	r, st, s := newRecordedRelay(t)
	r.c.id = &auth.Identity{User: "alice"}
	r.ctx = context.Background()
	if guarded {
		r.guard = newGuardrails([]string{"deny:destructive"}, nil)
	}
	if mask != nil {
		m, err := masking.New(mask)
		if err != nil {
			t.Fatal(err)
		}
		r.masker = newMasker(m)
	}
	return protoRelay{relay: r, st: st, rec: s}
}

// client passes the client's messages and returns what the gateway forwards to the target.
func (p protoRelay) client(t *testing.T, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	return relayEach(t, msgs, p.clientMessage)
}

// relayEach frames each of msgs onto a buffer and passes it to handle, as the relay does with
// what it reads, and returns what handle leaves of the buffer.
func relayEach(t *testing.T, msgs []interface{ Encode([]byte) ([]byte, error) }, handle func(typ byte, buf []byte, start int) []byte) []byte {
	t.Helper()
	var buf []byte
	must(t, feed(encode(t, msgs...), func(typ byte, body []byte) {
		start := len(buf)
		buf = append(buf, typ, 0, 0, 0, 0)
		buf = append(buf, body...)
		copy(buf[start+1:], be32(len(body)+4))
		buf = handle(typ, buf, start)
	}))
	return buf
}

// target passes the target's messages and returns what the gateway sends to the client.
func (p protoRelay) target(t *testing.T, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	buf := relayEach(t, msgs, p.targetMessage)
	p.flushRows()
	p.flushMaskEvent()
	must(t, p.rec.Commit())
	return buf
}

func be32(n int) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }

// frontendMessages decodes what the gateway forwards to the target (copies: the decoder reuses
// its messages).
func frontendMessages(t *testing.T, b []byte) []pgproto3.FrontendMessage {
	t.Helper()
	be := pgproto3.NewBackend(bytes.NewReader(b), io.Discard)
	var out []pgproto3.FrontendMessage
	for {
		m, err := be.Receive()
		if err != nil {
			return out
		}
		switch m := m.(type) {
		case *pgproto3.Parse:
			out = append(out, cloned(m))
		case *pgproto3.Describe:
			out = append(out, cloned(m))
		case *pgproto3.Query:
			out = append(out, cloned(m))
		case *pgproto3.Execute:
			out = append(out, cloned(m))
		case *pgproto3.Bind:
			out = append(out, cloned(m))
		default:
			out = append(out, m)
		}
	}
}

// cloned is a copy of m: the backend reuses its message values from one Receive to the next.
func cloned[T any](m *T) *T {
	c := *m
	return &c
}

// backendMessages decodes what the gateway sends to the client (their types, and the values of
// DataRows).
func backendMessages(t *testing.T, b []byte) []pgproto3.BackendMessage {
	t.Helper()
	f := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	var out []pgproto3.BackendMessage
	for {
		m, err := f.Receive()
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

// refused reports whether fwd is a refusal in place of the client's Execute: the gateway's own
// Parse of the DO block that raises the refusal, and no Execute of the client's portal p.
func refused(t *testing.T, fwd []byte) bool {
	t.Helper()
	raise := false
	for _, m := range frontendMessages(t, fwd) {
		if p, ok := m.(*pgproto3.Parse); ok && strings.Contains(p.Query, "RAISE EXCEPTION") {
			raise = true
		}
	}
	return raise
}

var (
	pc      = &pgproto3.ParseComplete{}
	bc      = &pgproto3.BindComplete{}
	rfq     = &pgproto3.ReadyForQuery{TxStatus: 'I'}
	syncMsg = &pgproto3.Sync{}
	inUse   = &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P05", Message: `prepared statement "s" already exists`}
	syntax  = &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "SELEC"`}
)

// A Parse under a name in use is refused by the target (42P05): the name still holds the DROP,
// and an Execute of it must be refused, not taken for the SELECT of the refused Parse.
func TestGuardReParseUnderNameInUse(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "DROP TABLE t"}, syncMsg)
	p.target(t, pc, rfq)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "SELECT 1"}, syncMsg)
	p.target(t, inUse, rfq)
	if fwd := p.client(t, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, syncMsg); !refused(t, fwd) {
		t.Fatalf("an Execute of s, which holds DROP TABLE t, was forwarded: %v", frontendMessages(t, fwd))
	}
}

// After an error the target skips everything up to Sync, a Parse of the unnamed statement too:
// it still holds the DROP.
func TestGuardParseSkippedAfterError(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	p.client(t, &pgproto3.Parse{Query: "DROP TABLE t"}, &pgproto3.Describe{ObjectType: 'S'}, syncMsg)
	p.target(t, pc, &pgproto3.ParameterDescription{}, &pgproto3.NoData{}, rfq)
	p.client(t, &pgproto3.Parse{Name: "x", Query: "SELEC"}, &pgproto3.Parse{Query: "SELECT 1"}, syncMsg)
	p.target(t, syntax, rfq)
	if fwd := p.client(t, &pgproto3.Bind{}, &pgproto3.Execute{}, syncMsg); !refused(t, fwd) {
		t.Fatalf("an Execute of the unnamed statement, which holds DROP TABLE t, was forwarded: %v", frontendMessages(t, fwd))
	}
}

// Pipelined: the re-Parse's answer has not come back when the Execute is decided; either
// statement may run, so the DROP decides.
func TestGuardReParsePipelined(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "DROP TABLE t"}, syncMsg)
	p.target(t, pc, rfq)
	fwd := p.client(t, &pgproto3.Parse{Name: "s", Query: "SELECT 1"}, syncMsg, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, syncMsg)
	if !refused(t, fwd) {
		t.Fatalf("an Execute of s, which may hold DROP TABLE t, was forwarded: %v", frontendMessages(t, fwd))
	}
}

// A named portal outlives its statement and a Sync (in a transaction): binding the name again
// fails while it exists, so it still runs the DROP it was bound to.
func TestGuardPortalBoundAgain(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "DROP TABLE t"}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}, syncMsg)
	p.target(t, pc, bc, &pgproto3.ReadyForQuery{TxStatus: 'T'})
	p.client(t, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Parse{Name: "s", Query: "SELECT 1"},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}, syncMsg)
	p.target(t, &pgproto3.CloseComplete{}, pc, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P03", Message: `cursor "p" already exists`}, &pgproto3.ReadyForQuery{TxStatus: 'E'})
	if fwd := p.client(t, &pgproto3.Execute{Portal: "p"}, syncMsg); !refused(t, fwd) {
		t.Fatalf("an Execute of portal p, bound to DROP TABLE t, was forwarded: %v", frontendMessages(t, fwd))
	}
}

// The usual flows are decided on exactly what they run: a refused statement does not make the
// next statement under the same name refused.
func TestGuardExactInSegment(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	fwd := p.client(t, &pgproto3.Parse{Query: "DELETE FROM t"}, &pgproto3.Bind{}, &pgproto3.Execute{}, syncMsg)
	if !refused(t, fwd) {
		t.Fatal("DELETE FROM t was not refused")
	}
	got := p.target(t, pc, bc, pc, bc, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: refusalPrefix + "x"}, rfq)
	if n := len(backendMessages(t, got)); n != 4 { // ParseComplete, BindComplete, the error, ReadyForQuery
		t.Errorf("client got %d messages, want 4: %v", n, backendMessages(t, got))
	}
	// A Parse and Describe of a DROP, never executed, then a SELECT under the same name in
	// one pipeline with its Execute.
	p.client(t, &pgproto3.Parse{Name: "s", Query: "DROP TABLE t"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, syncMsg)
	p.target(t, pc, &pgproto3.ParameterDescription{}, &pgproto3.NoData{}, rfq)
	for _, fwd := range [][]byte{
		p.client(t, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, syncMsg),
		p.client(t, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Parse{Name: "s", Query: "SELECT 2"},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, syncMsg),
	} {
		if refused(t, fwd) {
			t.Errorf("a SELECT was refused: %v", frontendMessages(t, fwd))
		}
	}
}

// The recording says what the target ran: the statement it holds under the name, not the
// text of a Parse it refused.
func TestRecordedExecuteOfNameInUse(t *testing.T) {
	p := newProtoRelay(t, false, nil)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "DROP TABLE t"}, syncMsg)
	p.target(t, pc, rfq)
	p.client(t, &pgproto3.Parse{Name: "s", Query: "SELECT 1"}, syncMsg)
	p.target(t, inUse, rfq)
	p.client(t, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, syncMsg)
	must(t, p.rec.Commit())
	var texts []string
	must(t, p.st.Events(context.Background(), p.rec.ID(), 0, func(e *event.Event) error {
		if e.Type == event.Query {
			texts = append(texts, string(e.Data))
		}
		return nil
	}))
	if len(texts) != 1 || !strings.Contains(texts[0], `"text":"DROP TABLE t"`) {
		t.Fatalf("recorded queries %q, want the Execute of DROP TABLE t", texts)
	}
}

// Rows of an Execute nobody described: the gateway describes the portal itself (its answer
// swallowed) and masks them with their own columns, not with none or an earlier result's.
func TestMaskUndescribedExecute(t *testing.T) {
	p := newProtoRelay(t, false, []string{"email"})
	const email = "jane.roe@example.com"
	fwd := p.client(t, &pgproto3.Parse{Query: "select email from users"}, &pgproto3.Bind{}, &pgproto3.Execute{}, syncMsg)
	described := false
	for _, m := range frontendMessages(t, fwd) {
		if d, ok := m.(*pgproto3.Describe); ok && d.ObjectType == 'P' {
			described = true
		}
	}
	if !described {
		t.Errorf("no Describe of the portal before the Execute: %v", frontendMessages(t, fwd))
	}
	got := p.target(t, pc, bc,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"), DataTypeOID: oidText}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte(email)}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq)
	if bytes.Contains(got, []byte(email)) {
		t.Fatalf("the email reached the client unmasked: %q", got)
	}
	for _, m := range backendMessages(t, got) {
		if _, ok := m.(*pgproto3.RowDescription); ok {
			t.Errorf("the client got the description it did not ask for")
		}
	}

	// A suspended portal executed again after another portal's rows (binary int4).
	p.client(t, &pgproto3.Parse{Name: "e", Query: "select email from users"}, &pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "e"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"}, &pgproto3.Execute{Portal: "p1", MaxRows: 1},
		&pgproto3.Parse{Name: "i", Query: "select 1::int4"}, &pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "i", ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P', Name: "p2"}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Execute{Portal: "p1"}, syncMsg)
	got = p.target(t, pc, bc, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"), DataTypeOID: oidText}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("a@b.io")}}, &pgproto3.PortalSuspended{},
		pc, bc, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("int4"), DataTypeOID: 23, Format: 1}}},
		&pgproto3.DataRow{Values: [][]byte{{0, 0, 0, 1}}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"), DataTypeOID: oidText}}}, // the gateway's Describe
		&pgproto3.DataRow{Values: [][]byte{[]byte(email)}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq)
	if bytes.Contains(got, []byte(email)) || bytes.Contains(got, []byte("a@b.io")) {
		t.Fatalf("an email reached the client unmasked: %q", got)
	}
}

// Values beyond the columns known (no description at all) are masked as text.
func TestMaskRowWithoutColumns(t *testing.T) {
	p := newProtoRelay(t, false, []string{"email"})
	got := p.target(t, &pgproto3.DataRow{Values: [][]byte{[]byte("jane.roe@example.com")}})
	if bytes.Contains(got, []byte("jane.roe@example.com")) {
		t.Fatalf("a value with no known column reached the client unmasked: %q", got)
	}
}

// A function call names its function by OID: on a guarded target it cannot be classified and
// is refused; its result is masked and recorded.
func TestFunctionCall(t *testing.T) {
	p := newProtoRelay(t, true, nil)
	fwd := p.client(t, &pgproto3.FunctionCall{Function: 2925, ResultFormatCode: 0})
	var q *pgproto3.Query
	for _, m := range frontendMessages(t, fwd) {
		if m, ok := m.(*pgproto3.Query); ok {
			q = m
		}
		if _, ok := m.(*pgproto3.FunctionCall); ok {
			t.Fatalf("the function call was forwarded on a guarded target")
		}
	}
	if q == nil || !strings.Contains(q.String, "RAISE EXCEPTION") {
		t.Fatalf("forwarded %v, want the refusal", frontendMessages(t, fwd))
	}

	p = newProtoRelay(t, false, []string{"email"})
	p.client(t, &pgproto3.FunctionCall{Function: 2925, Arguments: [][]byte{[]byte("x")}})
	got := p.target(t, &pgproto3.FunctionCallResponse{Result: []byte("<email>jane.roe@example.com</email>")}, rfq)
	if bytes.Contains(got, []byte("jane.roe@example.com")) {
		t.Fatalf("a function's result reached the client unmasked: %q", got)
	}
	var types []event.Type
	must(t, p.st.Events(context.Background(), p.rec.ID(), 0, func(e *event.Event) error {
		types = append(types, e.Type)
		if e.Type == event.Rows && bytes.Contains(e.Raw, []byte("jane.roe")) {
			t.Errorf("the recording holds the unmasked result")
		}
		return nil
	}))
	want := []event.Type{event.SessionStart, event.Query, event.Columns, event.Rows, event.Mask}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
}

// A reported setting carries what set_config put in it: select set_config('application_name',
// (select email from users limit 1), false) must not show the email in the ParameterStatus.
func TestMaskParameterStatus(t *testing.T) {
	p := newProtoRelay(t, false, []string{"email"})
	got := p.target(t, &pgproto3.ParameterStatus{Name: "application_name", Value: "jane.roe@example.com"}, rfq)
	if bytes.Contains(got, []byte("jane.roe")) {
		t.Fatalf("a ParameterStatus reached the client unmasked: %q", got)
	}
}

// With standard_conforming_strings off on the target, a backslash escapes the quote of a '...'
// string: 'x\” ; DROP TABLE t; -- ' is one string to the classifier and a DROP to the target.
// Text with a backslash is unclassifiable then, and while a request that may turn it off is
// unanswered.
func TestGuardNonStandardStrings(t *testing.T) {
	const q = `SELECT 'x\'' ; DROP TABLE t; -- '`
	refusedQuery := func(fwd []byte) bool {
		for _, m := range frontendMessages(t, fwd) {
			if m, ok := m.(*pgproto3.Query); ok && strings.Contains(m.String, "RAISE EXCEPTION") {
				return true
			}
		}
		return false
	}
	p := newProtoRelay(t, true, nil)
	if fwd := p.client(t, &pgproto3.Query{String: `SELECT E'a\nb'`}); refusedQuery(fwd) {
		t.Fatal("a backslash with standard_conforming_strings on and nothing pending was refused")
	}
	p.target(t, &pgproto3.RowDescription{}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq)
	// Pipelined behind a request that may turn it off.
	if fwd := p.client(t, &pgproto3.Query{String: "select set_config('standard_conforming_strings', 'off', false)"}, &pgproto3.Query{String: q}); !refusedQuery(fwd) {
		t.Fatalf("%s behind an unanswered request was forwarded", q)
	}
	p.target(t, &pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "off"}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq,
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: refusalPrefix + "x"}, rfq)
	// Reported off.
	if fwd := p.client(t, &pgproto3.Query{String: q}); !refusedQuery(fwd) {
		t.Fatalf("%s was forwarded with standard_conforming_strings off", q)
	}
	p.target(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: refusalPrefix + "x"}, rfq)
	if fwd := p.client(t, &pgproto3.Parse{Name: "s", Query: q}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, syncMsg); !refused(t, fwd) {
		t.Fatalf("an Execute of %s was forwarded with standard_conforming_strings off", q)
	}
}
