package event

import (
	"encoding/json"
	"strconv"
)

// JSONAppender is a payload that encodes itself: AppendJSON appends exactly the bytes
// encoding/json.Marshal would give, without reflection. The recorder uses it for the payloads
// recorded for every statement (query, columns, rows, result), where json.Marshal was a tenth
// of the gateway's recording cost. FuzzAppendJSON holds each one to encoding/json.
type JSONAppender interface {
	AppendJSON(dst []byte) []byte
}

// AppendJSON implements JSONAppender.
func (d QueryData) AppendJSON(b []byte) []byte {
	b = append(b, `{"text":`...)
	b = appendJSONString(b, d.Text)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, d.Protocol)
	if d.Statement != "" {
		b = append(b, `,"statement":`...)
		b = appendJSONString(b, d.Statement)
	}
	if d.Portal != "" {
		b = append(b, `,"portal":`...)
		b = appendJSONString(b, d.Portal)
	}
	if len(d.Params) > 0 {
		b = append(b, `,"params":[`...)
		for i, v := range d.Params {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.AppendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// AppendJSON implements JSONAppender.
func (v Value) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	field := func(name string) {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	if v.Null {
		field(`"null":true`)
	}
	if v.Text != nil {
		field(`"text":`)
		b = appendJSONString(b, *v.Text)
	}
	if v.Hex != "" {
		field(`"hex":`)
		b = appendJSONString(b, v.Hex)
	}
	if v.OID != 0 {
		field(`"oid":`)
		b = strconv.AppendUint(b, uint64(v.OID), 10)
	}
	return append(b, '}')
}

// AppendJSON implements JSONAppender.
func (d ColumnsData) AppendJSON(b []byte) []byte {
	if d.Columns == nil {
		return append(b, `{"columns":null}`...)
	}
	b = append(b, `{"columns":[`...)
	for i, c := range d.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, c.Name)
		b = append(b, `,"oid":`...)
		b = strconv.AppendUint(b, uint64(c.OID), 10)
		b = append(b, `,"format":`...)
		b = strconv.AppendInt(b, int64(c.Format), 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// AppendJSON implements JSONAppender.
func (d RowsData) AppendJSON(b []byte) []byte {
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, int64(d.Count), 10)
	return append(b, '}')
}

// AppendJSON implements JSONAppender.
func (d ResultData) AppendJSON(b []byte) []byte {
	b = append(b, `{"tag":`...)
	b = appendJSONString(b, d.Tag)
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, d.Rows, 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, d.DurationNS, 10)
	if d.Suspended {
		b = append(b, `,"suspended":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string the way encoding/json does. Printable ASCII
// without the characters it escapes (quote, backslash, and <, >, & for HTML safety) is copied
// as it is; anything else (control characters, non-ASCII text and its invalid UTF-8, U+2028)
// goes through encoding/json itself, so the bytes are always its bytes.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always marshals
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
