package masking

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// MaskJSON masks JSON text (a json or jsonb value): object keys are left alone, string values
// are masked as MaskText would mask their decoded contents, and a number value that is a card
// number (see MaskNumber) becomes a JSON string of its masked form, "************1111", since
// stars are no number. The result is valid JSON when src is. Text that is not JSON, or nests
// deeper than 64 levels, is masked with MaskText (hits then have MaskText's offsets). When nothing matches, out is src and nothing
// is allocated; otherwise out is built in dst[:0], and hits give the spans of the masked tokens
// in src.
func (m *Masker) MaskJSON(dst, src []byte) (out []byte, hits []Hit) {
	if len(m.dets) == 0 {
		return src, nil
	}
	// Strings without escapes read the same raw and decoded, and a match inside one is a match
	// in the raw text too, so raw text in which no detector fires needs no walk.
	// The exception is a card number with a fraction (4111111111111111.00), which only
	// MaskNumber takes, hence the check for a long run of digits.
	if bytes.IndexByte(src, '\\') < 0 && !(m.card && hasDigitRun(src, 13)) {
		if d, _, _ := m.next(src, 0, profileOf(src)); d == nil {
			return src, nil
		}
	}
	var (
		stack uint64 // bit per level: 1 = object
		depth int
		key   bool // the next string is an object key
		last  int
	)
	emit := func(s, e int, masked []byte, h []Hit) {
		if hits == nil {
			out = dst[:0]
		}
		out = append(out, src[last:s]...)
		out = append(out, masked...)
		hits = append(hits, h...)
		last = e
	}
	var scratch []byte
	for i := 0; i < len(src); {
		switch c := src[i]; c {
		case '{', '[':
			if depth == 64 {
				return m.MaskText(dst, src)
			}
			stack = stack<<1 | b2u(c == '{')
			depth++
			key = c == '{'
			i++
		case '}', ']':
			stack >>= 1
			depth = max(depth-1, 0)
			key = false
			i++
		case ',':
			key = stack&1 == 1 && depth > 0
			i++
		case ':':
			key = false
			i++
		case '"':
			e, esc := jsonStringEnd(src, i)
			if e < 0 {
				return m.MaskText(dst, src)
			}
			if key {
				i = e
				continue
			}
			if !esc {
				masked, h := m.MaskText(scratch[:0], src[i+1:e-1])
				if h != nil {
					for k := range h {
						h[k].Start += i + 1
						h[k].End += i + 1
					}
					emit(i+1, e-1, masked, h)
					scratch = masked
				}
			} else {
				var s string
				if json.Unmarshal(src[i:e], &s) == nil {
					masked, h := m.MaskText(nil, []byte(s))
					if h != nil {
						for k := range h {
							h[k].Start, h[k].End = i, e
						}
						emit(i, e, appendJSONString(nil, masked), h)
					}
				}
			}
			i = e
		default:
			if c == '-' || isDigit(c) {
				e := i + 1
				for e < len(src) && (isDigit(src[e]) || src[e] == '.' || src[e] == 'e' || src[e] == 'E' || src[e] == '+' || src[e] == '-') {
					e++
				}
				if masked, hit := m.MaskNumber(src[i:e]); hit && !key {
					q := append(append(append(scratch[:0], '"'), masked...), '"')
					emit(i, e, q, []Hit{{Detector: CreditCard, Start: i, End: e}})
					scratch = q
				}
				i = e
				continue
			}
			if isAlnum(c) {
				w := i
				for w < len(src) && isAlnum(src[w]) {
					w++
				}
				if word := string(src[i:w]); word != "true" && word != "false" && word != "null" {
					return m.MaskText(dst, src) // not JSON
				}
				i = w
				continue
			}
			i++
		}
	}
	if hits == nil {
		return src, nil
	}
	return append(out, src[last:]...), hits
}

// hasDigitRun reports whether src holds n digits in a row.
func hasDigitRun(src []byte, n int) bool {
	run := 0
	for _, c := range src {
		if isDigit(c) {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// jsonStringEnd returns the index after the closing quote of the string starting at i, and
// whether it holds escapes; -1 when it is not closed.
func jsonStringEnd(src []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc
		}
	}
	return -1, esc
}

// appendJSONString appends s as a JSON string, escaping only what JSON requires.
func appendJSONString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				out = append(out, `\ufffd`...)
			} else {
				out = append(out, s[i:i+n]...)
			}
			i += n
			continue
		default:
			out = append(out, c)
		}
		i++
	}
	return append(out, '"')
}
