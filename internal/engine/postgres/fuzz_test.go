package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// FuzzHandshake feeds arbitrary bytes to the startup phase as a client would send them: the
// engine must answer or hang up, never panic or wait for ever.
func FuzzHandshake(f *testing.F) {
	f.Add(startup(map[string]string{"user": "alice", "database": "pg"}))
	f.Add(append(startup(map[string]string{"user": "alice", "database": "pg/test"}), password("pw")...))
	f.Add([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	f.Add([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := testEngine(t, nil)
		e.d.Connector = downConnector{}
		c := script(in)
		e.Serve(context.Background(), c)
	})
}

// FuzzRelayMessages feeds arbitrary message streams to both directions' handlers, which
// decode what they inspect: malformed messages must be forwarded untouched, never crash.
func FuzzRelayMessages(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00"), []byte("T\x00\x00\x00\x06\x00\x00D\x00\x00\x00\x06\x00\x00C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"))
	f.Add([]byte("B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x01\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"), []byte("E\x00\x00\x00\x05\x00"))
	f.Fuzz(func(t *testing.T, fromClient, fromTarget []byte) {
		r, _, _ := newRecordedRelay(t)
		feed(fromClient, r.onClientMessage)
		feed(fromTarget, targetHandler(r))
		r.flushRows()
		r.flushCopyIn(true, "")
		r.flushCopyOut(true)
		if err := r.rec.Commit(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRewrite feeds arbitrary message bodies to the masking rewrite: it must never panic, and
// what it returns must still frame as one message of the same type.
func FuzzRewrite(f *testing.F) {
	f.Add(byte('D'), []byte("\x00\x02\x00\x00\x00\x134111 1111 1111 1111\xff\xff\xff\xff"))
	f.Add(byte('E'), []byte("SERROR\x00C23505\x00Mdup\x00DKey (c)=(4111111111111111)\x00\x00"))
	f.Add(byte('A'), []byte("\x00\x00\x00\x01c\x00bob@example.com\x00"))
	f.Add(byte('d'), []byte("1\tjane@example.com\n"))
	// Seven columns: text, cvv, int8, jsonb, then a binary numeric, text[] and record.
	row := binary.BigEndian.AppendUint16(nil, 7)
	for _, v := range [][]byte{[]byte("a"), []byte("123"), binary.BigEndian.AppendUint64(nil, 4111111111111111), []byte("\x01{}"),
		{0, 4, 0, 3, 0, 0, 0, 0, 0x10, 0x0f, 0x04, 0x57, 0x04, 0x57, 0x04, 0x57}, // numeric 4111111111111111
		binArray(oidText, []byte("4111 1111 1111 1111"), nil),
		binRecord(field{oidText, []byte("x@example.com")}, field{23, []byte{0, 0, 0, 1}})} {
		row = binary.BigEndian.AppendUint32(row, uint32(len(v)))
		row = append(row, v...)
	}
	f.Add(byte('D'), row)
	m, err := masking.New([]string{"credit_card", "email", "column:t.cvv"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		r := &relay{masker: newMasker(m), haveCols: true, columns: []event.Column{
			{Name: "a", OID: oidText}, {Name: "cvv", OID: oidText, Ruled: true}, {Name: "n", OID: oidInt8, Format: 1}, {Name: "j", OID: oidJSONB, Format: 1},
			{Name: "num", OID: oidNumeric, Format: 1}, {Name: "arr", OID: 1009, Format: 1}, {Name: "rec", OID: oidRecord, Format: 1}}}
		msg := append([]byte{typ, 0, 0, 0, 0}, body...)
		binary.BigEndian.PutUint32(msg[1:], uint32(4+len(body)))
		out := r.rewrite(typ, msg, 0)
		if len(out) < 5 || out[0] != typ || int(binary.BigEndian.Uint32(out[1:]))+1 != len(out) {
			t.Fatalf("rewrite returned a malformed message: %q", out)
		}
	})
}
