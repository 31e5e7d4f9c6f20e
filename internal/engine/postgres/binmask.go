package postgres

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgtype"
)

// Binary-format values that hold text or card numbers inside a container: numerics, arrays and
// anonymous records. Scalars are decoded and encoded with pgx's pgtype; arrays and records are
// walked by their framing (lengths and element type OIDs), each element masked like a column
// of its type, and written back with the new lengths.

// Array type OIDs whose elements the masker reads, by element OID. The array's own header names
// the element type; this table only says which column types are arrays.
var arrayOIDs = map[uint32]bool{
	1009: true, // _text
	1015: true, // _varchar
	1014: true, // _bpchar
	1003: true, // _name
	1016: true, // _int8
	1231: true, // _numeric
	199:  true, // _json
	3807: true, // _jsonb
	2287: true, // _record
}

// Built-in types whose binary format holds no text (numbers, times, network addresses,
// geometry, bit strings, ranges of those, object ids): their values are left as they are. Any
// other type the masker does not handle by name is masked as text (see unknownBinary).
var noText = map[uint32]bool{
	16: true, 18: true, 21: true, 23: true, 26: true, 27: true, 28: true, 29: true, // bool, "char", int2, int4, oid, tid, xid, cid
	700: true, 701: true, 790: true, // float4, float8, money
	1082: true, 1083: true, 1114: true, 1184: true, 1186: true, 1266: true, // date, time, timestamp(tz), interval, timetz
	2950: true, 5069: true, 3220: true, // uuid, xid8, pg_lsn
	650: true, 869: true, 829: true, 774: true, // cidr, inet, macaddr, macaddr8
	600: true, 601: true, 602: true, 603: true, 604: true, 628: true, 718: true, // point, lseg, path, box, polygon, line, circle
	1560: true, 1562: true, // bit, varbit
	3904: true, 3908: true, 3910: true, 3912: true, 3926: true, // int4range, tsrange, tstzrange, daterange, int8range
	2202: true, 2203: true, 2204: true, 2205: true, 2206: true, 3734: true, 3769: true, 4089: true, 4096: true, 4191: true, // reg* types
	// Their arrays.
	1000: true, 1002: true, 1005: true, 1007: true, 1028: true, 1010: true, 1011: true, 1012: true,
	1021: true, 1022: true, 791: true, 1182: true, 1183: true, 1115: true, 1185: true, 1187: true, 1270: true,
	2951: true, 271: true, 3221: true, 651: true, 1041: true, 1040: true, 775: true,
	1017: true, 1018: true, 1019: true, 1020: true, 1027: true, 629: true, 719: true, 1561: true, 1563: true,
	3905: true, 3909: true, 3911: true, 3913: true, 3927: true,
}

const (
	oidRecord = 2249
	// maxNesting bounds arrays of records of arrays...: a hostile value cannot recurse deeply.
	maxNesting = 8
)

// binaryValue masks a binary-format value of type oid; ok is false when it is left as it is.
func (mk *masker) binaryValue(oid uint32, v []byte, depth int) ([]byte, bool) {
	switch oid {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown:
		return mk.hitsOf(mk.m.MaskText(nil, v))
	case oidBytea: // masked as text, whatever bytes are around the text (see hexBytea)
		return mk.hitsOf(mk.m.MaskText(nil, v))
	case oidJSON:
		return mk.hitsOf(mk.m.MaskJSON(nil, v))
	case oidJSONB:
		if len(v) > 0 && v[0] == 1 { // jsonb binary: version byte, then the JSON text
			if out, ok := mk.hitsOf(mk.m.MaskJSON(nil, v[1:])); ok {
				return append([]byte{1}, out...), true
			}
		}
	case oidInt8:
		return mk.binaryInt8(v)
	case oidNumeric:
		return mk.binaryNumeric(v)
	case oidRecord:
		if depth < maxNesting {
			out, ok, _ := mk.binaryRecord(v, depth+1)
			return out, ok
		}
	default:
		if arrayOIDs[oid] {
			if depth < maxNesting {
				out, ok, _ := mk.binaryArray(v, depth+1)
				return out, ok
			}
			return nil, false
		}
		if !noText[oid] {
			return mk.unknownBinary(v, depth)
		}
	}
	return nil, false
}

// unknownBinary masks a binary value of a type the masker does not know by its OID: a table's
// row type or another composite, a domain, an enum, xml, tsvector, an extension's type such as
// citext, and arrays of those. It is walked as a record, or an array, when its framing adds up
// exactly (text never does: it cannot start with a zero byte), and is otherwise masked as text,
// which a type holding text needs and any other type survives, or, should a detector fire on its
// bytes, fails to decode: the safe failure. Passing such values as they are would let a client
// read any masked value by asking for binary results (select u from users u).
func (mk *masker) unknownBinary(v []byte, depth int) ([]byte, bool) {
	if depth < maxNesting {
		if out, ok, framed := mk.binaryRecord(v, depth+1); framed {
			return out, ok
		}
		if out, ok, framed := mk.binaryArray(v, depth+1); framed {
			return out, ok
		}
	}
	return mk.hitsOf(mk.m.MaskText(nil, v))
}

// binaryInt8 masks a card number stored as a bigint: it is sent with the masked digits as zeros
// (a valid bigint that keeps the visible last digits).
func (mk *masker) binaryInt8(v []byte) ([]byte, bool) {
	if len(v) != 8 {
		return nil, false
	}
	return mk.maskedNumber(oidInt8, strconv.AppendInt(nil, int64(binary.BigEndian.Uint64(v)), 10))
}

// binaryNumeric masks a card number stored as a numeric, like binaryInt8.
func (mk *masker) binaryNumeric(v []byte) ([]byte, bool) {
	var n pgtype.Numeric
	if err := numMap().Scan(oidNumeric, pgtype.BinaryFormatCode, v, &n); err != nil || !n.Valid || n.NaN || n.InfinityModifier != 0 {
		return nil, false
	}
	text, err := numMap().Encode(oidNumeric, pgtype.TextFormatCode, n, nil)
	if err != nil {
		return nil, false
	}
	return mk.maskedNumber(oidNumeric, text)
}

// maskedNumber runs the card detector on a number's text and, on a hit, encodes the masked
// number (stars as zeros) in binary as type oid.
func (mk *masker) maskedNumber(oid uint32, text []byte) ([]byte, bool) {
	out, hit := mk.m.MaskNumber(text)
	if !hit {
		return nil, false
	}
	zeros := strings.ReplaceAll(string(out), "*", "0")
	var enc []byte
	var err error
	if oid == oidInt8 {
		var n int64
		if err = numMap().Scan(oidInt8, pgtype.TextFormatCode, []byte(zeros), &n); err == nil {
			enc, err = numMap().Encode(oidInt8, pgtype.BinaryFormatCode, n, nil)
		}
	} else {
		var n pgtype.Numeric
		if err = numMap().Scan(oidNumeric, pgtype.TextFormatCode, []byte(zeros), &n); err == nil {
			enc, err = numMap().Encode(oidNumeric, pgtype.BinaryFormatCode, n, nil)
		}
	}
	if err != nil {
		return nil, false
	}
	mk.hits["credit_card"]++
	return enc, true
}

// numMap decodes and encodes numbers; pgtype.Map is safe for concurrent Scan and Encode of
// the built-in types. Built at first use: pgtype.NewMap registers every type (0.3-0.4 ms and
// 150 KB), which every start of the airlock binary paid, kubectl's credential plugin included.
var numMap = sync.OnceValue(pgtype.NewMap)

// binaryArray masks the elements of a binary array: i32 ndim, i32 has-null flag, u32 element
// OID, ndim x (i32 size, i32 lower bound), then each element as i32 length (-1: NULL) and bytes.
// framed reports whether v had that framing exactly.
func (mk *masker) binaryArray(v []byte, depth int) (out []byte, masked, framed bool) {
	if len(v) < 12 {
		return nil, false, false
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	elem := binary.BigEndian.Uint32(v[8:])
	if ndim < 0 || ndim > 6 || len(v) < 12+8*int(ndim) {
		return nil, false, false
	}
	head := 12 + 8*int(ndim)
	count := 0
	if ndim > 0 {
		count = 1
		for d := 0; d < int(ndim); d++ {
			size := int32(binary.BigEndian.Uint32(v[12+8*d:]))
			if size < 0 || int64(count)*int64(size) > int64(len(v)) { // each element needs 4 bytes at least
				return nil, false, false
			}
			count *= int(size)
		}
	}
	if elem == 0 {
		return nil, false, false // 0 would read as "each element names its type"
	}
	return mk.elements(v, head, count, elem, depth)
}

// binaryRecord masks the fields of a binary anonymous record: i32 field count, then each field
// as u32 type OID, i32 length (-1: NULL) and bytes.
func (mk *masker) binaryRecord(v []byte, depth int) (out []byte, masked, framed bool) {
	if len(v) < 4 {
		return nil, false, false
	}
	n := int32(binary.BigEndian.Uint32(v))
	if n < 0 || int64(n)*8 > int64(len(v)) {
		return nil, false, false
	}
	return mk.elements(v, 4, int(n), 0, depth) // each field names its type
}

// elements masks count length-prefixed values (i32 length, -1 for NULL, then the bytes)
// starting at v[off], each of type elem; or, when elem is 0, each preceded by its own type OID
// (a record's fields). It returns v rewritten with the new lengths, or masked false when nothing
// was masked or the framing does not add up to exactly v; framed reports whether it does.
func (mk *masker) elements(v []byte, off, count int, elem uint32, depth int) (_ []byte, masked, framed bool) {
	var out []byte
	p := off
	for i := 0; i < count; i++ {
		start, oid := p, elem
		if elem == 0 {
			if len(v)-p < 4 {
				return nil, false, false
			}
			oid = binary.BigEndian.Uint32(v[p:])
			p += 4
		}
		if len(v)-p < 4 {
			return nil, false, false
		}
		l := int32(binary.BigEndian.Uint32(v[p:]))
		p += 4
		if l < 0 {
			if out != nil {
				out = append(out, v[start:p]...)
			}
			continue
		}
		if int(l) > len(v)-p {
			return nil, false, false
		}
		val := v[p : p+int(l)]
		p += int(l)
		nv, ok := mk.binaryValue(oid, val, depth)
		if !ok {
			if out != nil {
				out = append(out, v[start:p]...)
			}
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(v)+16), v[:start]...) // everything before, unchanged
		}
		if elem == 0 {
			out = binary.BigEndian.AppendUint32(out, oid)
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(nv)))
		out = append(out, nv...)
	}
	if p != len(v) {
		return nil, false, false
	}
	return out, out != nil, true
}
