package termsafe

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// Visible returns s with every character that a terminal acts on instead of showing written
// as a Go escape: CR as \r, the other C0 controls but newline and tab (ESC, BS, BEL, ...) and
// DEL as \x1b, the C1 controls and the bidirectional overrides and isolates as \u009b, and
// bytes that are not UTF-8 as \xff. Recorded text (a statement, a value, an error message, a user
// name) printed with it cannot move the cursor, erase or rewrite what was printed before it
// (a statement that hides itself behind "\r\x1b[K"), or send the viewer's terminal commands
// (OSC 52 clipboard writes, title reports). A backslash is printed as it is, so the text
// `\x1b` and an escaped ESC look alike.
func Visible(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if hidden(r, n) {
			return escape(s, i)
		}
		i += n
	}
	return s
}

func hidden(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n == 1:
		return true
	case r < 0x20:
		return r != '\n' && r != '\t'
	case r < 0x7f:
		return false
	case r <= 0x9f:
		return true
	}
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

func escape(s string, i int) string {
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !hidden(r, n):
			b = append(b, s[i:i+n]...)
		case r == '\r':
			b = append(b, `\r`...)
		case n == 1:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		default:
			b = fmt.Appendf(b, `\u%04x`, r)
		}
		i += n
	}
	return string(b)
}

// Writer writes Visible of each write to W. Each write must hold whole UTF-8 sequences (as
// fmt.Fprintf and io.WriteString give it): one split between writes is escaped as bytes.
type Writer struct{ W io.Writer }

func (w Writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.W, Visible(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
