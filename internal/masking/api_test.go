package masking

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestNewRules(t *testing.T) {
	for _, bad := range [][]string{
		{"creditcard"},
		{""},
		{"regex:ticket"},
		{"regex:Ticket:x"},
		{"regex:email:x"},
		{"regex:t:("},
		{"regex:t:a", "regex:t:b"},
		{"column:"},
		{"column:a..b"},
		{"column:a.b.c.d"},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	m := mustNew(t, append(Detectors(), "column:payments.cvv", "column:ssn", "column:billing.cards.pan", "regex:ticket:TCK-[0-9]{6}")...)
	if len(m.dets) != len(builtin)+1 {
		t.Fatalf("detectors %v", m.dets)
	}
	for _, tt := range []struct {
		table, column string
		want          bool
	}{
		{"payments", "cvv", true},
		{"public.payments", "CVV", true},
		{"orders", "cvv", false},
		{"payments", "amount", false},
		{"anything", "ssn", true},
		{"billing.cards", "pan", true},
		{"public.cards", "pan", false},
		{"cards", "pan", false},
	} {
		if got := m.MaskColumn(tt.table, tt.column); got != tt.want {
			t.Errorf("MaskColumn(%q, %q) = %v", tt.table, tt.column, got)
		}
	}
	out, hits := m.MaskText(nil, []byte("see TCK-123456 and TCK-12345"))
	if string(out) != "see ***-****** and TCK-12345" || len(hits) != 1 || hits[0] != (Hit{"ticket", 4, 14}) {
		t.Fatalf("%q %v", out, hits)
	}
	if got := string(MaskWhole(nil, []byte("{12,\"a b\"}"))); got != `{**,"* *"}` {
		t.Fatal(got)
	}
}

func TestMaskTextOverlapAndHits(t *testing.T) {
	m := mustNew(t, CreditCard, Email, Phone, USSSN)
	in := "a@b.com paid 4111111111111111 from +1 415 555 2671, ssn 123-45-6789"
	out, hits := m.MaskText(nil, []byte(in))
	want := "a****@****.com paid ************1111 from +* *** *** 2671, ssn ***-**-6789"
	if string(out) != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
	var names []string
	for _, h := range hits {
		names = append(names, h.Detector+":"+in[h.Start:h.End])
	}
	if got := strings.Join(names, " "); got != "email:a@b.com credit_card:4111111111111111 phone:+1 415 555 2671 us_ssn:123-45-6789" {
		t.Fatal(got)
	}
}

// TestMaskTextBuffers: out is src itself when nothing matched, and reuses dst otherwise.
func TestMaskTextBuffers(t *testing.T) {
	m := mustNew(t, CreditCard, Email)
	src := []byte("nothing to see here, 12345")
	out, hits := m.MaskText(make([]byte, 0, 64), src)
	if hits != nil || &out[0] != &src[0] || len(out) != len(src) {
		t.Fatal("no match must return src")
	}
	dst := make([]byte, 3, 64)
	out, _ = m.MaskText(dst, []byte("x@y.io"))
	if string(out) != "x****@****.io" || &out[0] != &dst[:1][0] {
		t.Fatalf("%q: want dst's storage reused from index 0", out)
	}
	if n := testing.AllocsPerRun(100, func() { m.MaskText(nil, src) }); n != 0 {
		t.Fatalf("%v allocs on a value with no match", n)
	}
}

// TestMaskTextLength: the masked value's length is the source length minus each match plus its
// mask, and only email masks change length; card digits never survive but the last four.
func TestMaskTextLength(t *testing.T) {
	m := mustNew(t, Detectors()...)
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"4111111111111111", "4111 1111 1111 1111", "jane.roe@example.com", "x", " ", ",",
		"{", "}", "\"", "+44 20 7946 0958", "123-45-6789", "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE",
		"2024-01-15", "c4ca4238a0b923820dcc509a6f75849b", "12", "(", ")", testJWT, "\n"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		src := []byte(b.String())
		out, hits := m.MaskText(nil, src)
		want := len(src)
		for _, h := range hits {
			if h.Detector == Email {
				seg := src[h.Start:h.End]
				want += len("x****@****") + len(seg) - bytes.LastIndexByte(seg, '.') - (h.End - h.Start)
			}
		}
		if len(out) != want {
			t.Fatalf("%q -> %q: len %d, want %d", src, out, len(out), want)
		}
		for _, h := range hits {
			if seg := src[h.Start:h.End]; h.Detector == CreditCard && bytes.Count(out, seg) >= bytes.Count(src, seg) {
				t.Fatalf("%q -> %q: card %q survived", src, out, seg)
			}
		}
		again, _ := m.MaskText(nil, out)
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", src, out, again)
		}
	}
}

// TestArrayCompositeSyntax: masking a PostgreSQL array or composite literal as text keeps every
// quote, brace, parenthesis, comma and backslash where it was.
func TestArrayCompositeSyntax(t *testing.T) {
	m := mustNew(t, Detectors()...)
	for _, lit := range []string{
		`{4111111111111111,5555555555554444}`,
		`{"4111 1111 1111 1111","jane@example.com",NULL}`,
		`{{a@b.io,"x\"y@z.org"},{"+1 415 555 2671","\\123-45-6789"}}`,
		`(4111111111111111,"jane@example.com","(415) 555-2671",)`,
		`("{""card"": ""4111111111111111""}",AKIAIOSFODNN7EXAMPLE)`,
		`[1:2]={GB82WEST12345698765432,"DE89 3704 0044 0532 0130 00"}`,
	} {
		out, hits := m.MaskText(nil, []byte(lit))
		if len(hits) == 0 {
			t.Errorf("%s: no hit", lit)
		}
		if a, b := syntax(lit), syntax(string(out)); a != b {
			t.Errorf("%s -> %s: syntax %q became %q", lit, out, a, b)
		}
	}
}

func syntax(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if strings.IndexByte(`{}()",\[]=:`, c) >= 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestMaskNumber(t *testing.T) {
	m := mustNew(t, CreditCard)
	for in, want := range map[string]string{
		"4111111111111111":    "************1111",
		"4111111111111111.00": "************1111.00",
		"-4111111111111111":   "-************1111",
		"4111111111111112":    "",
		"123":                 "",
		"41111111111111110":   "",
		"4111111111111111e0":  "",
	} {
		out, hit := m.MaskNumber([]byte(in))
		if (want == "") == hit || (hit && string(out) != want) {
			t.Errorf("MaskNumber(%s) = %s, %v", in, out, hit)
		}
	}
	if _, hit := mustNew(t, Email).MaskNumber([]byte("4111111111111111")); hit {
		t.Error("MaskNumber without credit_card")
	}
}

func TestMaskJSON(t *testing.T) {
	m := mustNew(t, CreditCard, Email, PEMPrivateKey)
	for _, tt := range []struct{ in, want string }{
		{`{"email":"jane@example.com","n":1}`, `{"email":"j****@****.com","n":1}`},
		{`{"jane@example.com":"x"}`, ``},
		{`{"card":4111111111111111,"c2":4111111111111111.00,"ok":12}`, `{"card":"************1111","c2":"************1111.00","ok":12}`},
		{`[4111111111111111, "4111-1111-1111-1111"]`, `["************1111", "****-****-****-1111"]`},
		{`{"a":{"b":["x\"y jane@example.com\u00e9"]}}`, `{"a":{"b":["x\"y j****@****.comé"]}}`},
		{`{"k":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"}`, `{"k":"-----BEGIN PRIVATE KEY-----\n****\n-----END PRIVATE KEY-----"}`},
		{`{"a":"nothing","b":[1,2,3]}`, ``},
		{`not json jane@example.com`, `not json j****@****.com`},
	} {
		out, hits := m.MaskJSON(nil, []byte(tt.in))
		if tt.want == "" {
			if hits != nil || string(out) != tt.in {
				t.Errorf("%s -> %s", tt.in, out)
			}
			continue
		}
		if string(out) != tt.want || len(hits) == 0 {
			t.Errorf("%s\n got  %s\n want %s", tt.in, out, tt.want)
		}
		if json.Valid([]byte(tt.in)) && !json.Valid(out) {
			t.Errorf("%s: masked JSON is not valid", out)
		}
	}
	clean := []byte(`{"a":"nothing","b":[1,2,3]}`)
	if n := testing.AllocsPerRun(100, func() { m.MaskJSON(nil, clean) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// luhnComplete returns digits with a Luhn check digit appended.
func luhnComplete(digits string) string {
	for d := 0; d < 10; d++ {
		s := digits + strconv.Itoa(d)
		if luhn([]byte(s)) {
			return s
		}
	}
	panic("unreachable")
}

func TestCardLengths(t *testing.T) {
	m := mustNew(t, CreditCard)
	for n := 12; n <= 20; n++ {
		card := luhnComplete(strings.Repeat("4", n-1))
		out, hits := m.MaskText(nil, []byte(card))
		if got, want := len(hits) == 1, n >= 13 && n <= 19; got != want {
			t.Errorf("%d digits: hit %v", n, got)
		} else if got && string(out) != strings.Repeat("*", n-4)+card[n-4:] {
			t.Errorf("%d digits: %s", n, out)
		}
	}
}
