package termsafe

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzVisible: whatever recorded text holds, Visible leaves nothing a terminal acts on.
func FuzzVisible(f *testing.F) {
	for _, s := range []string{"select 1", "drop table t /*\r\x1b[K*/", "\x1b]52;c;aGk=\x07", "a\u202eb", "\xff\xfe", "\u009b31m", "tab\tnl\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := Visible(s)
		if !utf8.ValidString(v) {
			t.Fatalf("Visible(%q) = %q: not UTF-8", s, v)
		}
		for i, r := range v {
			if hidden(r, utf8.RuneLen(r)) {
				t.Fatalf("Visible(%q) = %q keeps %U at %d", s, v, r, i)
			}
		}
		if Visible(v) != v {
			t.Fatalf("Visible is not idempotent on %q", s)
		}
	})
}

// FuzzFilter: a recorded terminal's output, filtered whole or a byte at a time, gives the same
// bytes, none of which starts a string sequence (OSC, DCS, SOS, PM, APC) or asks the terminal
// to answer (ENQ, DECID), and filtering them again changes nothing.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		"plain\r\n", "\x1b[31mred\x1b[0m", "\x1b]52;c;aGk=\x07", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
		"\x1bP$q\"p\x1b\\", "\x1b[c\x1b[6n\x1b[21t\x05", "\x1b[?1049h\x1b[?25l", "\xc2\x9b31m", "\x9b6n",
		"\x1b\x1b]0;t\x07", "\x1b[" + strings.Repeat("1;", 100) + "m",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole, bytewise, again bytes.Buffer
		(&Filter{W: &whole}).Write(in)
		fb := &Filter{W: &bytewise}
		for i := range in {
			fb.Write(in[i : i+1])
		}
		if !bytes.Equal(whole.Bytes(), bytewise.Bytes()) {
			t.Fatalf("%q: whole %q, byte by byte %q", in, whole.Bytes(), bytewise.Bytes())
		}
		out := whole.Bytes()
		for _, bad := range []string{"\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x05", "\x1bZ", "\u009d", "\u0090", "\u009b"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Fatalf("%q: the output %q holds %q", in, out, bad)
			}
		}
		// Filtered again, the output passes whole, but for a tail the filter holds until more
		// comes (a 0xC2 that may start a C1 control, an unfinished sequence).
		fa := &Filter{W: &again}
		fa.Write(out)
		if !bytes.HasPrefix(out, again.Bytes()) || again.Len() < len(out) && fa.state == ground {
			t.Fatalf("%q: filtered %q, filtered again %q", in, out, again.Bytes())
		}
	})
}
