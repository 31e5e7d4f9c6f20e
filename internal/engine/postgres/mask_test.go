package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

func TestRewriteMasksRowsAndMessages(t *testing.T) {
	r, _, _ := newRecordedRelay(t)
	m, err := masking.New([]string{"credit_card", "email", "column:pay.cvv"})
	if err != nil {
		t.Fatal(err)
	}
	r.masker = newMasker(m)
	r.columns = []event.Column{
		{Name: "card", OID: oidText}, {Name: "email", OID: oidText}, {Name: "cvv", OID: oidText, Ruled: true},
		{Name: "n", OID: oidInt8, Format: 1}, {Name: "note", OID: oidText}, {Name: "nothing", OID: oidText},
	}
	r.haveCols = true
	bigint := binary.BigEndian.AppendUint64(nil, 4111111111111111)
	row := encode(t, &pgproto3.DataRow{Values: [][]byte{
		[]byte("4111 1111 1111 1111"), []byte("jane.doe@example.com"), []byte("123"), bigint, nil, []byte("plain"),
	}})
	prefix := []byte("Z\x00\x00\x00\x05I") // an earlier message in the same batch stays as it is
	buf := append(append([]byte{}, prefix...), row...)
	buf = r.rewrite('D', buf, len(prefix))

	if !bytes.HasPrefix(buf, prefix) {
		t.Fatalf("earlier message changed: %q", buf)
	}
	msgs := decodeBackend(t, buf[len(prefix):])
	dr, ok := msgs[0].(*pgproto3.DataRow)
	if !ok || len(msgs) != 1 {
		t.Fatalf("rewritten stream is not one DataRow: %#v", msgs)
	}
	want := []string{"**** **** **** 1111", "j****@****.com", "***"}
	for i, w := range want {
		if string(dr.Values[i]) != w {
			t.Errorf("value %d = %q, want %q", i, dr.Values[i], w)
		}
	}
	if n := binary.BigEndian.Uint64(dr.Values[3]); n != 1111 {
		t.Errorf("bigint card = %d, want the masked digits as zeros (1111)", n)
	}
	if dr.Values[4] != nil || string(dr.Values[5]) != "plain" {
		t.Errorf("NULL or untouched value changed: %q %q", dr.Values[4], dr.Values[5])
	}
	if r.masker.hits["credit_card"] != 2 || r.masker.hits["email"] != 1 || r.masker.hits["column"] != 1 {
		t.Errorf("hits %v", r.masker.hits)
	}

	// A unique violation's DETAIL quotes the key.
	errMsg := encode(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505", Message: "duplicate key",
		Detail: "Key (card)=(4111 1111 1111 1111) already exists."})
	out := decodeBackend(t, r.rewrite('E', errMsg, 0))
	if e := out[0].(*pgproto3.ErrorResponse); e.Detail != "Key (card)=(**** **** **** 1111) already exists." || e.Code != "23505" {
		t.Errorf("error detail %q code %s", e.Detail, e.Code)
	}
	// Nothing to mask: the very same bytes.
	clean := encode(t, &pgproto3.NotificationResponse{PID: 1, Channel: "c", Payload: "hello"})
	if got := r.rewrite('A', append([]byte{}, clean...), 0); !bytes.Equal(got, clean) {
		t.Errorf("clean notification rewritten: %q", got)
	}
}

func decodeBackend(t *testing.T, b []byte) []pgproto3.BackendMessage {
	t.Helper()
	f := pgproto3.NewFrontend(bytes.NewReader(b), nil)
	var out []pgproto3.BackendMessage
	for {
		m, err := f.Receive()
		if err != nil {
			return out
		}
		switch x := m.(type) { // Receive reuses its messages: keep copies
		case *pgproto3.DataRow:
			c := &pgproto3.DataRow{}
			for _, v := range x.Values {
				if v == nil {
					c.Values = append(c.Values, nil)
				} else {
					c.Values = append(c.Values, append([]byte{}, v...))
				}
			}
			out = append(out, c)
		case *pgproto3.ErrorResponse:
			c := *x
			out = append(out, &c)
		default:
			out = append(out, m)
		}
	}
}

func TestRefusalQueryQuotesSafely(t *testing.T) {
	q := refusalQuery("it's $$ a trap $m$ \\ ;")
	var msg pgproto3.Query
	if err := msg.Decode(q[5:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains([]byte(msg.String), []byte("ERRCODE = '42501'")) || !bytes.Contains([]byte(msg.String), []byte("it's $$ a trap")) {
		t.Fatalf("refusal query %q", msg.String)
	}
}

// A cast to bytea is no way around masking: its bytes are masked as text, in the hex text
// format and in binary, also with other bytes around the text.
func TestMaskBytea(t *testing.T) {
	m, err := masking.New([]string{"credit_card", "email"})
	if err != nil {
		t.Fatal(err)
	}
	mk := newMasker(m)
	text := event.Column{Name: "b", OID: oidBytea}
	bin := event.Column{Name: "b", OID: oidBytea, Format: 1}
	hexOf := func(s string) []byte { return []byte(`\x` + hex.EncodeToString([]byte(s))) }
	for _, tc := range []struct {
		col      event.Column
		in, want []byte
	}{
		{text, hexOf("mail jane.roe@example.com"), hexOf("mail j****@****.com")},
		{text, hexOf("4111 1111 1111 1111"), hexOf("**** **** **** 1111")},
		{bin, []byte("jane.roe@example.com"), []byte("j****@****.com")},
		{text, hexOf("nothing to hide"), nil},
		{text, hexOf("\xff\xfejane.roe@example.com"), hexOf("\xff\xfej****@****.com")},
		{bin, []byte("\xff\x00jane.roe@example.com\x00"), []byte("\xff\x00j****@****.com\x00")},
		{bin, []byte("\x89PNG\x00\x01"), nil},
		{text, []byte(`\xzz`), nil}, // not hex: left as it is
	} {
		out, ok := mk.value(tc.col, tc.in)
		if (tc.want == nil) == ok || (ok && !bytes.Equal(out, tc.want)) {
			t.Errorf("%s (format %d): got %q %v, want %q", tc.in, tc.col.Format, out, ok, tc.want)
		}
	}
}
