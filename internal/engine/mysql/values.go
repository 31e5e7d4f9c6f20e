package mysql

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/event"
)

var errShort = errors.New("value runs past the end of the packet")

// binaryLen returns how many bytes the binary-protocol value of type typ at the start of p takes
// (go-mysql's RowData.ParseBinary decodes values but does not say where they are, and indexes
// out of range on a short packet).
func binaryLen(typ byte, p []byte) (int, error) {
	n := 0
	switch typ {
	case gomysql.MYSQL_TYPE_NULL:
		return 0, nil
	case gomysql.MYSQL_TYPE_TINY:
		n = 1
	case gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR:
		n = 2
	case gomysql.MYSQL_TYPE_INT24, gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_FLOAT:
		n = 4
	case gomysql.MYSQL_TYPE_LONGLONG, gomysql.MYSQL_TYPE_DOUBLE:
		n = 8
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP,
		gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_NEWDATE:
		if len(p) < 1 {
			return 0, errShort
		}
		n = 1 + int(p[0])
	default: // strings, blobs, decimals, JSON, BIT, ENUM, SET, geometry: length-encoded
		l, isNull, m := lenencInt(p)
		if m == 0 || isNull || l > uint64(len(p)) {
			return 0, errShort
		}
		n = m + int(l)
	}
	if n > len(p) {
		return 0, errShort
	}
	return n, nil
}

// lenencPayload is the bytes of a length-encoded binary value (strings, decimals, JSON).
func lenencPayload(v []byte) []byte {
	_, _, m := lenencInt(v)
	if m == 0 || m > len(v) {
		return nil
	}
	return v[m:]
}

// binaryText renders a binary-protocol value as MySQL prints it in the text protocol, for the
// recording. ok is false for a value it cannot render (the caller keeps hex).
func binaryText(typ byte, unsigned bool, v []byte) (out []byte, ok bool) {
	switch typ {
	case gomysql.MYSQL_TYPE_TINY:
		if unsigned {
			return strconv.AppendUint(nil, uint64(v[0]), 10), true
		}
		return strconv.AppendInt(nil, int64(int8(v[0])), 10), true
	case gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR:
		x := binary.LittleEndian.Uint16(v)
		if unsigned || typ == gomysql.MYSQL_TYPE_YEAR {
			return strconv.AppendUint(nil, uint64(x), 10), true
		}
		return strconv.AppendInt(nil, int64(int16(x)), 10), true
	case gomysql.MYSQL_TYPE_INT24, gomysql.MYSQL_TYPE_LONG:
		x := binary.LittleEndian.Uint32(v)
		if unsigned {
			return strconv.AppendUint(nil, uint64(x), 10), true
		}
		return strconv.AppendInt(nil, int64(int32(x)), 10), true
	case gomysql.MYSQL_TYPE_LONGLONG:
		x := binary.LittleEndian.Uint64(v)
		if unsigned {
			return strconv.AppendUint(nil, x, 10), true
		}
		return strconv.AppendInt(nil, int64(x), 10), true
	case gomysql.MYSQL_TYPE_FLOAT:
		return strconv.AppendFloat(nil, float64(math.Float32frombits(binary.LittleEndian.Uint32(v))), 'g', -1, 32), true
	case gomysql.MYSQL_TYPE_DOUBLE:
		return strconv.AppendFloat(nil, math.Float64frombits(binary.LittleEndian.Uint64(v)), 'g', -1, 64), true
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_NEWDATE:
		s, err := gomysql.FormatBinaryDate(int(v[0]), v[1:])
		return s, err == nil
	case gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP:
		s, err := gomysql.FormatBinaryDateTime(int(v[0]), v[1:])
		return s, err == nil
	case gomysql.MYSQL_TYPE_TIME:
		s, err := gomysql.FormatBinaryTime(int(v[0]), v[1:])
		return s, err == nil
	}
	s := lenencPayload(v)
	return s, s != nil || len(v) == 1
}

// renderValue makes an event.Value of a value's text (or, for non-UTF-8 bytes, hex).
func renderValue(b []byte) event.Value {
	if utf8.Valid(b) {
		s := string(b)
		return event.Value{Text: &s}
	}
	return event.Value{Hex: hex.EncodeToString(b)}
}

// splitTextRow splits a text-protocol row into its values (nil for NULL), appending to dst.
func splitTextRow(p []byte, n int, dst [][]byte) ([][]byte, error) {
	for i := 0; i < n; i++ {
		v, isNull, m, ok := lenencString(p)
		if !ok {
			return dst, errShort
		}
		p = p[m:]
		if isNull {
			dst = append(dst, nil)
		} else {
			dst = append(dst, v[:len(v):len(v)])
		}
	}
	if len(p) != 0 {
		return dst, errors.New("trailing bytes after the row's values")
	}
	return dst, nil
}

// splitBinaryRow splits a binary-protocol row (header 0x00, NULL bitmap with an offset of 2,
// values) into the values' raw bytes, nil for NULL, appending to dst.
func splitBinaryRow(p []byte, fields []*gomysql.Field, dst [][]byte) ([][]byte, error) {
	nb := (len(fields) + 7 + 2) >> 3
	if len(p) < 1+nb || p[0] != gomysql.OK_HEADER {
		return dst, errShort
	}
	bitmap := p[1 : 1+nb]
	p = p[1+nb:]
	for i, f := range fields {
		if bitmap[(i+2)>>3]&(1<<((i+2)&7)) != 0 {
			dst = append(dst, nil)
			continue
		}
		n, err := binaryLen(f.Type, p)
		if err != nil {
			return dst, err
		}
		dst = append(dst, p[:n:n])
		p = p[n:]
	}
	if len(p) != 0 {
		return dst, errors.New("trailing bytes after the row's values")
	}
	return dst, nil
}

// appendBinaryRow encodes values (nil is NULL) as a binary-protocol row.
func appendBinaryRow(dst []byte, values [][]byte) []byte {
	nb := (len(values) + 7 + 2) >> 3
	dst = append(dst, gomysql.OK_HEADER)
	at := len(dst)
	dst = append(dst, make([]byte, nb)...)
	for i, v := range values {
		if v == nil {
			dst[at+(i+2)>>3] |= 1 << ((i + 2) & 7)
			continue
		}
		dst = append(dst, v...)
	}
	return dst
}

// appendTextRow encodes values (nil is NULL) as a text-protocol row.
func appendTextRow(dst []byte, values [][]byte) []byte {
	for _, v := range values {
		if v == nil {
			dst = append(dst, 0xfb)
			continue
		}
		dst = gomysql.AppendLengthEncodedInteger(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// parseField decodes a column definition. go-mysql's parser indexes without bounds checks, so a
// malformed packet from the target is caught here rather than crashing the gateway.
func parseField(p []byte) (f *gomysql.Field, err error) {
	defer func() {
		if recover() != nil {
			f, err = nil, errors.New("malformed column definition")
		}
	}()
	return gomysql.FieldData(p).Parse()
}
