package event

import (
	"encoding/binary"
	"fmt"
)

// Rows travel in Event.Raw in a generic layout that any engine can produce without an extra
// copy of each value: per row, u32 length of the row body followed by the body, where a body is
// u16 column count and, per column, i32 length (-1 for NULL) and the value bytes. It is the body
// of a PostgreSQL DataRow, which lets the PostgreSQL engine record rows by appending what it
// forwards.

// AppendRowBody appends one already-encoded row body.
func AppendRowBody(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// AppendRow encodes values (nil is NULL) as one row.
func AppendRow(dst []byte, values [][]byte) []byte {
	n := 2
	for _, v := range values {
		n += 4 + len(v)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(values)))
	for _, v := range values {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// DecodeRows calls fn for each row in raw. Values alias raw; nil is NULL.
func DecodeRows(raw []byte, fn func(values [][]byte) error) error {
	var values [][]byte
	for len(raw) > 0 {
		if len(raw) < 4 {
			return fmt.Errorf("rows: truncated row header")
		}
		n := binary.BigEndian.Uint32(raw)
		raw = raw[4:]
		if uint64(n) > uint64(len(raw)) || n < 2 {
			return fmt.Errorf("rows: row length %d out of range", n)
		}
		body := raw[:n]
		raw = raw[n:]
		cols := int(binary.BigEndian.Uint16(body))
		body = body[2:]
		values = values[:0]
		for i := 0; i < cols; i++ {
			if len(body) < 4 {
				return fmt.Errorf("rows: truncated column %d", i)
			}
			l := int32(binary.BigEndian.Uint32(body))
			body = body[4:]
			if l == -1 {
				values = append(values, nil)
				continue
			}
			if l < 0 {
				return fmt.Errorf("rows: column %d length %d out of range", i, l)
			}
			if int(l) > len(body) {
				return fmt.Errorf("rows: column %d length %d out of range", i, l)
			}
			values = append(values, body[:l:l])
			body = body[l:]
		}
		if len(body) != 0 {
			return fmt.Errorf("rows: %d trailing bytes in row", len(body))
		}
		if err := fn(values); err != nil {
			return err
		}
	}
	return nil
}
