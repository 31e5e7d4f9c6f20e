package api

import (
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/airlock-gw/airlock/internal/event"
)

// rowRenderer turns the packed values of rows events into JSON, using the columns of the latest
// columns event: a text-format value is a JSON string; a binary-format value whose type pgx knows
// is decoded and re-encoded in PostgreSQL's text format; anything else is {"hex": "..."}. NULL is
// null.
type rowRenderer struct {
	cols []event.Column
	m    *pgtype.Map // created on the first binary value
	buf  []byte
}

func (rr *rowRenderer) setColumns(data []byte) {
	var c event.ColumnsData
	if json.Unmarshal(data, &c) == nil {
		rr.cols = c.Columns
	} else {
		rr.cols = nil
	}
}

// render decodes raw. On a decode error it returns the rows before it and the error.
func (rr *rowRenderer) render(raw []byte) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := event.DecodeRows(raw, func(values [][]byte) error {
		row := make([]byte, 0, 64)
		row = append(row, '[')
		for i, v := range values {
			if i > 0 {
				row = append(row, ',')
			}
			row = rr.appendValue(row, i, v)
		}
		row = append(row, ']')
		out = append(out, row)
		return nil
	})
	return out, err
}

func (rr *rowRenderer) appendValue(dst []byte, i int, v []byte) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	var col event.Column
	known := i < len(rr.cols)
	if known {
		col = rr.cols[i]
	}
	if !known || col.Format == 0 {
		if utf8.Valid(v) {
			return appendString(dst, string(v))
		}
		return appendHex(dst, v)
	}
	if s, ok := rr.binaryText(col.OID, v); ok {
		return appendString(dst, s)
	}
	return appendHex(dst, v)
}

// binaryText renders a binary-format value as PostgreSQL would in text format.
func (rr *rowRenderer) binaryText(oid uint32, v []byte) (string, bool) {
	if rr.m == nil {
		rr.m = pgtype.NewMap()
	}
	t, ok := rr.m.TypeForOID(oid)
	if !ok {
		return "", false
	}
	val, err := t.Codec.DecodeValue(rr.m, oid, pgtype.BinaryFormatCode, v)
	if err != nil || val == nil {
		return "", false
	}
	b, err := rr.m.Encode(oid, pgtype.TextFormatCode, val, rr.buf[:0])
	if err != nil || b == nil || !utf8.Valid(b) {
		return "", false
	}
	rr.buf = b
	return string(b), true
}

func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

func appendHex(dst []byte, v []byte) []byte {
	dst = append(dst, `{"hex":"`...)
	dst = hex.AppendEncode(dst, v)
	return append(dst, `"}`...)
}
