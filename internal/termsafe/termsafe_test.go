package termsafe

import (
	"bytes"
	"strings"
	"testing"
)

func TestVisible(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"select 1", "select 1"},
		{"a\nb\tc", "a\nb\tc"},
		{"drop table t /*\r\x1b[K*/ select 1", `drop table t /*\r\x1b[K*/ select 1`},
		{"\x1b]52;c;cm0gLXJmIH4K\x07", `\x1b]52;c;cm0gLXJmIH4K\x07`},
		{"\u009b21t", `\u009b21t`},
		{"a\x7fb\x00", `a\x7fb\x00`},
		{"\xff\xfe", `\xff\xfe`},
		{"\u202edcba", `\u202edcba`},
		{"naïve 日本 ✓", "naïve 日本 ✓"},
	} {
		if got := Visible(tt.in); got != tt.want {
			t.Errorf("Visible(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilter(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"text", "hello\r\nworld ✓ 日本\r\n", "hello\r\nworld ✓ 日本\r\n"},
		{"screen drawing", "\x1b[H\x1b[2J\x1b[1;31mred\x1b[0m\x1b[?1049h\x1b[?25l\x1b(B\x1b7\x1b8\x1b[3 q\x1b[5;20r\x1b[?2004h",
			"\x1b[H\x1b[2J\x1b[1;31mred\x1b[0m\x1b[?1049h\x1b[?25l\x1b(B\x1b7\x1b8\x1b[3 q\x1b[5;20r\x1b[?2004h"},
		{"clipboard write", "a\x1b]52;c;cm0gLXJmIH4K\x07b", "ab"},
		{"clipboard write ended by ST", "a\x1b]52;c;eA==\x1b\\b", "ab"},
		{"hyperlink", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"title", "\x1b]0;title\x07x", "x"},
		{"title report", "\x1b[21t\x1b[14t\x1b[8;100;200t", ""},
		{"device reports", "\x1b[c\x1b[>c\x1b[6n\x1b[5n\x1b[?6n\x1b[x\x1b[?2026$p\x1b[>q\x1bZ\x05", ""},
		{"dcs", "\x1bP$qm\x1b\\\x1bP+q544e\x1b\\\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\z", "z"},
		{"apc pm sos", "\x1b_Gf=100;AAAA\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\.", "."},
		{"c1 controls", "\u009b21t\u009d52;c;eA==\u009c\x9b6n.", "21t52;c;eA==6n."},
		{"keyboard lock and echo", "\x1b[2h\x1b[12l\x1b[4h", "\x1b[4h"},
		{"mouse and focus reports", "\x1b[?1000h\x1b[?1004;1006h\x1b[?1h", "\x1b[?1h"},
		{"control inside a sequence", "\x1b[2\x071t", "\x07"},
		{"cancelled sequence", "\x1b[21\x18t", "t"},
		{"media copy", "\x1b[5i", ""},
		{"private sgr", "\x1b[>4;2m", ""},
		{"string ended by C1 ST", "\x1b]52;c;eA==\u009cok", "ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then one byte per write: sequences split between writes.
			for _, step := range []int{len(tt.in) + 1, 1} {
				var out bytes.Buffer
				f := &Filter{W: &out}
				for i := 0; i < len(tt.in); i += step {
					if _, err := f.Write([]byte(tt.in[i:min(i+step, len(tt.in))])); err != nil {
						t.Fatal(err)
					}
				}
				if got := out.String(); got != tt.want {
					t.Errorf("step %d: %q -> %q, want %q", step, tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestFilterLongSequences(t *testing.T) {
	var out bytes.Buffer
	f := &Filter{W: &out}
	f.Write([]byte("\x1b[" + strings.Repeat("1;", 1000) + "21t" + "\x1b]0;" + strings.Repeat("x", 1<<16) + "\x07done"))
	if out.String() != "done" {
		t.Fatalf("%q", out.String())
	}
}
