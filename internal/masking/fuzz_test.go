package masking

import (
	"bytes"
	"testing"
)

// FuzzMaskText: no panic; hits are ordered, in range and disjoint; no card number a hit names
// survives in the output; out is src when nothing matched; masking masked output changes nothing.
// The seed corpus is in testdata/fuzz/FuzzMaskText.
func FuzzMaskText(f *testing.F) {
	for _, s := range []string{
		"4111 1111 1111 1111", "jane@example.com", "+44 (0)20 7946 0958", "123-45-6789",
		"GB82 WEST 1234 5698 7654 32", "AKIAIOSFODNN7EXAMPLE", testJWT,
		"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
		`{"a":"4111111111111111","b":[5555555555554444]}`, "(415) 555-2671",
	} {
		f.Add([]byte(s))
	}
	m, err := New(Detectors())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		orig := bytes.Clone(src)
		out, hits := m.MaskText(nil, src)
		if !bytes.Equal(src, orig) {
			t.Fatal("src modified")
		}
		if hits == nil && !bytes.Equal(out, src) {
			t.Fatal("changed without a hit")
		}
		end := 0
		for _, h := range hits {
			if h.Start < end || h.End <= h.Start || h.End > len(src) {
				t.Fatalf("bad hits %v", hits)
			}
			end = h.End
			if h.Detector == CreditCard {
				digits := unseparated(src[h.Start:h.End])
				if bytes.Count(unseparated(out), digits) >= bytes.Count(unseparated(src), digits) {
					t.Fatalf("%q -> %q: card digits %s survived", src, out, digits)
				}
			}
		}
		again, h2 := m.MaskText(nil, out)
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q (%v)\n%q (%v)", src, out, hits, again, h2)
		}
		jout, _ := m.MaskJSON(nil, src)
		if jagain, _ := m.MaskJSON(nil, jout); !bytes.Equal(jagain, jout) && !bytes.Equal(jout, src) {
			t.Fatalf("MaskJSON not idempotent:\n%q\n%q\n%q", src, jout, jagain)
		}
	})
}

// unseparated drops the single separators between digits a card number may be written with.
func unseparated(b []byte) []byte {
	var d []byte
	for i, c := range b {
		if (c != ' ' && c != '-') || i == 0 || i+1 == len(b) || !isDigit(b[i-1]) || !isDigit(b[i+1]) {
			d = append(d, c)
		}
	}
	return d
}
