package masking

import (
	"bytes"
	"strings"
	"testing"
)

// streamMask masks chunks the way a relay does, through a Stream, flushed at the end.
func streamMask(m *Masker, chunks ...[]byte) []byte {
	st := m.NewStream()
	var out []byte
	for _, c := range chunks {
		o, _ := st.Next(c, true)
		out = append(out, o...)
	}
	o, _ := st.Flush()
	return append(out, o...)
}

// TestPendingSplitEverywhere splits texts holding every kind of value at every byte (and short
// ones at every pair of bytes): masked chunk by chunk, the output is what masking the whole
// text gives.
func TestPendingSplitEverywhere(t *testing.T) {
	pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\nkRUhOz6q+/b==\n-----END RSA PRIVATE KEY-----"
	texts := []struct {
		specs []string
		text  string
	}{
		{[]string{CreditCard}, "card 4111111111111111 ok\n"},
		{[]string{CreditCard}, "4111 1111 1111 1111"},
		{[]string{CreditCard}, "a 4111-1111-1111-1111, b 5555555555554444."},
		{[]string{CreditCard}, "4111 1111 1111 1111 2222 3333 4\n"},
		{[]string{CreditCard}, "order 1234 4111 1111 1111 1111\r\n$ "},
		{[]string{CreditCard}, "amex 3782 822463 10005."},
		{[]string{Email}, "mail john.doe@example.com now"},
		{[]string{Email}, "x+tag@mail.example.org"},
		{[]string{Phone}, "call +44 (0)20 7946 0958 or (415) 555-2671 or 020 7946 0958\n"},
		{[]string{USSSN}, "ssn 123-45-6789 done"},
		{[]string{IBAN}, "iban GB82 WEST 1234 5698 7654 32 ok"},
		{[]string{IBAN}, "DE89370400440532013000"},
		{[]string{AWSAccessKey}, "key AKIAIOSFODNN7EXAMPLE end"},
		{[]string{JWT}, "Bearer " + testJWT + "\n"},
		{[]string{PEMPrivateKey}, "key:\n" + pem + "\nafter"},
		{[]string{"regex:ticket:TCK-[0-9]{6}"}, "see TCK-123456 and TCK-654321\n"},
		{Detectors(), "4111111111111111 jane@example.com +44 20 7946 0958 123-45-6789 GB82WEST12345698765432 AKIAIOSFODNN7EXAMPLE " + testJWT + " " + pem},
	}
	for _, tt := range texts {
		m := mustNew(t, tt.specs...)
		src := []byte(tt.text)
		whole, hits := m.MaskText(nil, src)
		if hits == nil {
			t.Fatalf("%v: %q has nothing to mask", tt.specs, tt.text)
		}
		for k := 0; k <= len(src); k++ {
			if got := streamMask(m, src[:k], src[k:]); !bytes.Equal(got, whole) {
				t.Errorf("%v split at %d (%q | %q):\n got %q\nwant %q", tt.specs, k, src[:k], src[k:], got, whole)
			}
		}
		if len(src) > 64 {
			continue
		}
		for i := 0; i <= len(src); i++ {
			for j := i; j <= len(src); j++ {
				if got := streamMask(m, src[:i], src[i:j], src[j:]); !bytes.Equal(got, whole) {
					t.Errorf("%v split at %d and %d: got %q, want %q", tt.specs, i, j, got, whole)
				}
			}
		}
		// Byte by byte, as a slow writer sends it.
		var chunks [][]byte
		for i := range src {
			chunks = append(chunks, src[i:i+1])
		}
		if got := streamMask(m, chunks...); !bytes.Equal(got, whole) {
			t.Errorf("%v byte by byte: got %q, want %q", tt.specs, got, whole)
		}
	}
}

// TestPendingHoldsLittle: output that cannot begin a value is not held (a shell's echo of
// letters with the card detector on, a prompt, a finished line), and the tails that are held
// are the short ones expected.
func TestPendingHoldsLittle(t *testing.T) {
	tests := []struct {
		specs      []string
		text, held string
	}{
		{[]string{CreditCard}, "l", ""},
		{[]string{CreditCard}, "ls -l\r\n", ""},
		{[]string{CreditCard}, "PROMPT> ", ""},
		{[]string{CreditCard}, "total 12\n", ""},
		{[]string{CreditCard}, "x4111", ""},
		{[]string{CreditCard}, "4", "4"},
		{[]string{CreditCard}, "card 4111 1111", "4111 1111"},
		{[]string{CreditCard}, "card 4111 1111 ", "4111 1111 "},
		{[]string{CreditCard, Phone}, "call +44 20", "+44 20"},
		{[]string{Email}, "hello world", "world"},
		{[]string{Email}, "hello world ", ""},
		{[]string{Email}, "to jane@exa", "jane@exa"},
		{[]string{AWSAccessKey}, "AKIAIOS", "AKIAIOS"},
		{[]string{AWSAccessKey}, "ALPHA", ""},
		{[]string{JWT}, "token eyJhbGc", "eyJhbGc"},
		{[]string{JWT}, "they", ""},
		{[]string{PEMPrivateKey}, "x -----BEG", "-----BEG"},
		{[]string{PEMPrivateKey}, "-----BEGIN CERTIFICATE-----\nMIIB", ""},
		{[]string{PEMPrivateKey}, "-----BEGIN EC PRIVATE KEY-----\nMHcC", "-----BEGIN EC PRIVATE KEY-----\nMHcC"},
		{[]string{IBAN}, "iban GB82 WE", "GB82 WE"},
		{[]string{IBAN}, "ERROR", ""},
		{[]string{"regex:t:T-[0-9]+"}, "see T-12", "T-12"},
	}
	for _, tt := range tests {
		m := mustNew(t, tt.specs...)
		p := m.Pending([]byte(tt.text))
		if got := tt.text[p:]; got != tt.held {
			t.Errorf("%v Pending(%q) holds %q, want %q", tt.specs, tt.text, got, tt.held)
		}
	}
	// Bounded: a long run of digit groups is not held whole.
	long := strings.Repeat("1234 ", 1000)
	if p := mustNew(t, CreditCard).Pending([]byte(long)); len(long)-p > MaxPending {
		t.Errorf("held %d bytes", len(long)-p)
	}
}

// FuzzPending: a text split in two anywhere is masked chunk by chunk as it is whole, or more
// (a value glued to the byte before a chunk may be masked in the chunk alone), never less: every
// byte masking the whole text hides is hidden in the output too. Email is left out: it is the one
// detector whose mask changes the value's length, which the byte-for-byte check needs.
func FuzzPending(f *testing.F) {
	for _, s := range []string{
		"4111 1111 1111 1111", "+44 (0)20 7946 0958", "123-45-6789",
		"GB82 WEST 1234 5698 7654 32", "AKIAIOSFODNN7EXAMPLE", testJWT,
		"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "(415) 555-2671",
	} {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	var specs []string
	for _, d := range Detectors() {
		if d != Email {
			specs = append(specs, d)
		}
	}
	m, err := New(specs)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte, k uint16) {
		cut := int(k) % (len(src) + 1)
		got := streamMask(m, src[:cut], src[cut:])
		whole, _ := m.MaskText(nil, src)
		if len(got) != len(src) || len(whole) != len(src) {
			t.Fatalf("lengths changed: src %d, whole %d, split at %d %d", len(src), len(whole), cut, len(got))
		}
		for i := range src {
			if whole[i] == '*' && src[i] != '*' && got[i] != '*' {
				t.Fatalf("split at %d: byte %d (%q) is masked in %q but not in %q", cut, i, src[i], whole, got)
			}
		}
	})
}
